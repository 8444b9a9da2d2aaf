"""The optimizer step of `trainables.train`: eager, or captured once as a CUDA graph and replayed.

Why: one step of the article's CNN at batch 8 is tens of microseconds of GPU work but about a
millisecond of Python and kernel launches. Replaying the whole step (forward, backward,
optimizer update) as one CUDA graph removes that overhead (docs/design.md, "Performance": 6.6k ->
52k samples/s on an H100). A graph has fixed shapes and addresses, so:
- the batch's indices are copied into a fixed index tensor before each replay, and the batch is
  gathered from the resident data set inside the graph;
- the learning rate lives in a one-element device tensor that the optimizer reads (fused SGD,
  capturable Adam/AdamW), refilled only when the schedule changes it (warmup, cosine);
- the first `EAGER_WARMUP_STEPS` steps run eagerly on a side stream (they are real training
  steps; they also create the optimizer state that the graph then updates in place), then the
  step is captured and replayed for every later step.
Dropout inside the graph draws from the same Philox stream, at the same offsets, as eager mode,
so a captured trajectory matches the eager one (over 100 steps on an H100: identical losses and
weights for SGD and momentum; checked by `benchmarks/gpu_check.py` and, on a GPU, by
tests/test_fast_step.py).

On CPU, or with `cuda_graph=False`, the step is the same function run eagerly. On CPU, image
models run in the channels_last (NHWC) layout (`to_channels_last`): there, max-pooling an NCHW
activation is ~10x slower than an NHWC one, and the gradient that comes back through a
`Flatten` is kept NHWC too, else every backward op converts layouts (together ~1.8x samples/s
for the article's CNN on this project's 2-core machines, torch 2.14, CPU time under load).
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

LossOf = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

EAGER_WARMUP_STEPS = 3  # eager steps before capture (lazy CUDA init, optimizer state)
GRAPH_MAX_BATCH = 1024  # above this a step is compute-bound: capture saves little, costs memory


def use_cuda_graph(enabled: bool, device: torch.device, batch_size: int, total_steps: int) -> bool:
    """Capture the step only where it pays: CUDA, small batches, enough steps to replay."""
    return (
        enabled
        and device.type == "cuda"
        and batch_size <= GRAPH_MAX_BATCH
        and total_steps > EAGER_WARMUP_STEPS + 1
    )


def prefer_channels_last(device: torch.device, x: torch.Tensor) -> bool:
    """NHWC activations on CPU for image inputs (see the module docstring)."""
    return device.type == "cpu" and x.ndim == 4


class _NHWCGrad(torch.autograd.Function):
    """Identity forward; the gradient flowing back is made channels_last."""

    @staticmethod
    def forward(ctx: object, x: torch.Tensor) -> torch.Tensor:
        return x.view_as(x)

    @staticmethod
    def backward(ctx: object, grad: torch.Tensor) -> torch.Tensor:
        return grad.contiguous(memory_format=torch.channels_last)


def _nhwc_grad_pre_hook(module: nn.Module, args: tuple) -> tuple | None:
    x = args[0]
    if x.ndim == 4 and x.requires_grad:
        return (_NHWCGrad.apply(x), *args[1:])
    return None


def to_channels_last(model: nn.Module) -> nn.Module:
    """NHWC weights, and NHWC gradients back through every Flatten (CPU speed; same math)."""
    model = model.to(memory_format=torch.channels_last)
    for module in model.modules():
        if isinstance(module, nn.Flatten):
            module.register_forward_pre_hook(_nhwc_grad_pre_hook)
    return model


def sgd_step(
    model: nn.Module, opt: torch.optim.Optimizer, loss_of: LossOf, x: torch.Tensor, y: torch.Tensor
) -> torch.Tensor:
    """One optimizer step on the batch (x, y); returns the batch's loss (detached)."""
    loss = loss_of(model(x), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss.detach()


@functools.cache
def _side_stream(device: torch.device) -> torch.cuda.Stream:
    """One warm-up stream per device and process. Not a new one per trial: cuBLAS keeps a
    workspace (tens of MiB) for every stream it has run on, so fresh streams grew a reused
    worker's memory trial by trial (measured on an H100: ~200 MiB per trial, up to 32 streams)."""
    return torch.cuda.Stream(device=device)


@dataclass(frozen=True)
class StepInputs:
    """What a step trains: the model, its optimizer, the loss, and the training data resident
    on the device (a batch is an index tensor into `x_all` / `y_all`)."""

    model: nn.Module
    opt: torch.optim.Optimizer
    loss_of: LossOf
    x_all: torch.Tensor
    y_all: torch.Tensor

    def step(self, idx: torch.Tensor) -> torch.Tensor:
        """One optimizer step on the batch `idx`; returns its loss (detached)."""
        return sgd_step(self.model, self.opt, self.loss_of, self.x_all[idx], self.y_all[idx])


class EagerStep:
    """`step(idx, lr) -> loss`: the step run eagerly, lr set as a float on the optimizer."""

    def __init__(self, inputs: StepInputs) -> None:
        self.inputs = inputs

    def __call__(self, idx: torch.Tensor, lr: float) -> torch.Tensor:
        for group in self.inputs.opt.param_groups:
            group["lr"] = lr
        return self.inputs.step(idx)


class GraphStep:
    """`step(idx, lr) -> loss`: the same step, captured as a CUDA graph after a few eager steps.

    The optimizer must read its lr from `lr_tensor` (see `train.make_optimizer`). The returned
    loss is the graph's output tensor: valid until the next call (consume it in stream order,
    e.g. `loss_sum += loss`, before calling again).
    """

    def __init__(
        self,
        inputs: StepInputs,
        lr_tensor: torch.Tensor,
        batch_size: int,
        eager_steps: int = EAGER_WARMUP_STEPS,
    ) -> None:
        self.inputs, self.lr_tensor = inputs, lr_tensor
        self.idx = torch.zeros(batch_size, dtype=torch.long, device=inputs.x_all.device)
        self.eager_left = eager_steps
        self.lr_now = math.nan
        self.graph: torch.cuda.CUDAGraph | None = None
        self.loss: torch.Tensor | None = None
        self.fell_back = False
        # the graphs of earlier trials in this process (a reused actor) are gone, but their
        # memory pools stay reserved until the cache is emptied: give them back now
        torch.cuda.empty_cache()

    def _body(self) -> torch.Tensor:
        return self.inputs.step(self.idx)

    def _eager_on_side_stream(self) -> torch.Tensor:
        # as torch.cuda.graph's docs advise before a capture: warm up on a side stream
        main, side = torch.cuda.current_stream(), _side_stream(self.idx.device)
        side.wait_stream(main)
        with torch.cuda.stream(side), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*capturable=True")  # eager on purpose
            loss = self._body()
        main.wait_stream(side)
        loss.record_stream(main)
        return loss

    def _capture(self) -> None:
        graph = torch.cuda.CUDAGraph()
        self.inputs.opt.zero_grad(set_to_none=True)  # grads then live in the graph's pool
        try:
            with torch.cuda.graph(graph):
                self.loss = self._body()
        except RuntimeError as err:  # an op that cannot be captured: train on, eagerly
            warnings.warn(
                f"CUDA graph capture failed ({err}); this trial runs eagerly", stacklevel=3
            )
            self.fell_back = True
            return
        self.graph = graph

    def __call__(self, idx: torch.Tensor, lr: float) -> torch.Tensor:
        if lr != self.lr_now:
            self.lr_tensor.fill_(lr)  # a device-side fill: no host sync
            self.lr_now = lr
        self.idx.copy_(idx)
        if self.graph is None and not self.fell_back and self.eager_left <= 0:
            self._capture()
        if self.graph is None:
            self.eager_left -= 1
            return self._eager_on_side_stream()
        self.graph.replay()
        assert self.loss is not None
        return self.loss
