"""The gradient noise scale B_simple = tr(Sigma) / |G|^2 (McCandlish et al. 2018), measured
during training with the two-batch estimator (docs/design.md, "The gradient noise scale").

Why: B_simple predicts the critical batch size, where the best learning rate stops growing
linearly with the batch size (lr*(B) = lr_max / (1 + B_noise / B)). A trial that sets
`measure_noise_scale: true` reports it per epoch as `noise_scale`; the analysis puts it beside
the B_noise fitted to the best learning rates.

The estimator. With G the true gradient and Sigma the per-example gradient covariance, the
squared norm of the mean gradient of B examples drawn without replacement from the N of the
training set has E|G_B|^2 = |G|^2 + tr(Sigma) (1/B - 1/N) (the finite-data correction: a full
batch has no sampling noise). Two batch sizes B_small < B_big at the same weights give
unbiased estimates of both terms (`g2_estimate`, `trace_estimate`). Each is very noisy at
small batches, so both are smoothed by exponential moving averages and divided only then
(`NoiseScaleEMA`).

In the training loop (`NoiseScaleMeter`): MEASUREMENTS_PER_EPOCH times per epoch at every batch
size (the schedule and the EMAs' one-epoch window are counted in examples, so batch sizes are
averaged over the same stretch of training), before the optimizer step, the gradient of a
fresh random batch of B_big = BIG_BATCH_FACTOR x B examples (at most N) is computed at the
current weights (not applied; in chunks, so memory stays bounded), and |G_small|^2 is read from
the step's own gradient of B examples (an optimizer pre-step hook, before the update). The
measurement draws its examples from its own generator and restores the RNG streams (dropout)
and buffers (batch-norm statistics) it touched, so a trial trains exactly as it would without
it. It costs MEASUREMENTS_PER_EPOCH x min(16 B, N) extra gradient examples per epoch: about 25%
at B = 8 on 4,000 examples, but several epochs' worth at B >= N / 16, so a sweep measures it in
a few trials near each batch size's best lr rather than in all of them. The CUDA-graph step
(trainables.fast_step) is not used while measuring: the graph cannot hand out the gradient
before its own update.

    >>> ema = NoiseScaleEMA(decay=0.9)
    >>> ema.value  # NaN until measured
    nan
    >>> ema.update(g_small_sq=2.0, g_big_sq=1.2, b_small=8, b_big=128)
    >>> round(ema.value, 2)  # B_simple = tr(Sigma) / |G|^2, both estimated and averaged
    5.95
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from trainables.fast_step import LossOf, StepInputs

BIG_BATCH_FACTOR = 16  # B_big = 16 x B (capped at the training set): a larger B_big gives a
# less noisy estimate per example spent (the variance of |G|^2's estimate falls as 1 / B_big)
MEASUREMENTS_PER_EPOCH = 8  # at every batch size (fewer only when an epoch has fewer steps):
# the schedule and the EMA window (one epoch) are counted in examples, not steps
MIN_WINDOW = 4  # the EMAs average over at least this many measurements
BIG_CHUNK = 1024  # examples per forward/backward pass of the big batch


# ---------------------------------------------------------------- the estimator (pure)
def _spread(b: float, n: float) -> float:
    """Variance factor of the mean gradient of b examples drawn without replacement from n:
    1/b - 1/n (a full batch, b = n, has no sampling noise at all)."""
    return 1.0 / b - 1.0 / n


def g2_estimate(
    g_small_sq: float, g_big_sq: float, b_small: float, b_big: float, n: float = math.inf
) -> float:
    """Unbiased estimate of |G|^2 from two gradient norms at the same weights (batches drawn
    without replacement from n examples)."""
    a_s, a_b = _spread(b_small, n), _spread(b_big, n)
    return (a_s * g_big_sq - a_b * g_small_sq) / (a_s - a_b)


def trace_estimate(
    g_small_sq: float, g_big_sq: float, b_small: float, b_big: float, n: float = math.inf
) -> float:
    """Unbiased estimate of tr(Sigma), the per-example gradient variance."""
    return (g_small_sq - g_big_sq) / (_spread(b_small, n) - _spread(b_big, n))


def ema_decay(measurements_per_epoch: float) -> float:
    """EMA decay whose averaging window is about one epoch (and at least MIN_WINDOW)."""
    return 1.0 - 1.0 / max(measurements_per_epoch, MIN_WINDOW)


class NoiseScaleEMA:
    """Exponential moving averages of |G|^2 and tr(Sigma); `value` = their ratio.

    Both averages start at 0 with the same decay, so their start-up bias cancels in the ratio.
    """

    def __init__(self, decay: float, g2: float = 0.0, trace: float = 0.0, n: int = 0) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.decay, self.g2, self.trace, self.n = decay, g2, trace, n

    def update(
        self,
        g_small_sq: float,
        g_big_sq: float,
        b_small: float,
        b_big: float,
        n: float = math.inf,
    ) -> None:
        if not b_big > b_small > 0:
            raise ValueError(f"need 0 < b_small < b_big, got {b_small} and {b_big}")
        g2 = g2_estimate(g_small_sq, g_big_sq, b_small, b_big, n)
        tr = trace_estimate(g_small_sq, g_big_sq, b_small, b_big, n)
        if not (math.isfinite(g2) and math.isfinite(tr)):
            return  # a diverging step: keep the last good averages
        self.g2 = self.decay * self.g2 + (1 - self.decay) * g2
        self.trace = self.decay * self.trace + (1 - self.decay) * tr
        self.n += 1

    @property
    def value(self) -> float:
        """B_simple = tr(Sigma) / |G|^2; NaN before the first measurement or while the
        averaged |G|^2 is not positive (gradient noise swamps the signal)."""
        if self.n == 0 or self.g2 <= 0:
            return math.nan
        return self.trace / self.g2

    def state(self) -> dict[str, float]:
        return {"decay": self.decay, "g2": self.g2, "trace": self.trace, "n": self.n}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> NoiseScaleEMA:
        return cls(
            float(state["decay"]), float(state["g2"]), float(state["trace"]), int(state["n"])
        )


# ---------------------------------------------------------------- gradients (torch)
def grad_sq_norm(params: Iterable[nn.Parameter]) -> float:
    """|g|^2 of the gradients currently held in `.grad`."""
    total = sum(float(p.grad.detach().pow(2).sum()) for p in params if p.grad is not None)
    return float(total)


def batch_grad_sq_norm(
    model: nn.Module, loss_of: LossOf, x: torch.Tensor, y: torch.Tensor, chunk: int = BIG_CHUNK
) -> float:
    """|g|^2 of the mean loss over (x, y) at the current weights; `.grad` is left untouched.

    The batch is processed in chunks (each chunk's mean gradient weighted by its share)."""
    params = [p for p in model.parameters() if p.requires_grad]
    total = [torch.zeros_like(p) for p in params]
    n = x.shape[0]
    for i in range(0, n, chunk):
        xc, yc = x[i : i + chunk], y[i : i + chunk]
        grads = torch.autograd.grad(loss_of(model(xc), yc), params)
        for acc, g in zip(total, grads, strict=True):
            acc.add_(g, alpha=xc.shape[0] / n)
    return float(sum(float(t.pow(2).sum()) for t in total))


class NoiseScaleMeter:
    """Measures B_simple inside `trainables.train`'s loop (see the module docstring).

    Call `before_step(step)` before every optimizer step; read `value` at the end of an epoch;
    `capture()` / `restore()` carry it across checkpoints."""

    def __init__(
        self, inputs: StepInputs, batch_size: int, steps_per_epoch: int, seed: int
    ) -> None:
        self.model, self.loss_of = inputs.model, inputs.loss_of
        self.x_all, self.y_all = inputs.x_all, inputs.y_all
        self.b_small = batch_size
        self.b_big = min(BIG_BATCH_FACTOR * batch_size, self.x_all.shape[0])
        self.n_total = self.x_all.shape[0]
        per_epoch = self.n_total / (MEASUREMENTS_PER_EPOCH * batch_size)  # steps between
        self.every = max(1, min(round(per_epoch), steps_per_epoch))
        self.gen = torch.Generator(device=self.x_all.device).manual_seed(10_007 + seed)
        self.ema = NoiseScaleEMA(ema_decay(steps_per_epoch / self.every))
        self._g_big_sq: float | None = None  # armed: the next optimizer step completes it
        inputs.opt.register_step_pre_hook(self._on_pre_step)

    @property
    def enabled(self) -> bool:
        return self.b_big > self.b_small

    @property
    def value(self) -> float:
        return self.ema.value if self.enabled else math.nan

    def before_step(self, step: int) -> None:
        """On measurement steps, compute |G_big|^2 at the current weights (no update)."""
        if not self.enabled or step % self.every:
            return
        device = self.x_all.device
        idx = torch.randperm(self.x_all.shape[0], generator=self.gen, device=device)[: self.b_big]
        buffers = {k: v.clone() for k, v in self.model.named_buffers()}
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            self._g_big_sq = batch_grad_sq_norm(
                self.model, self.loss_of, self.x_all[idx], self.y_all[idx]
            )
        if buffers:  # batch-norm running statistics: as if the big batch was never seen
            with torch.no_grad():
                for k, v in self.model.named_buffers():
                    v.copy_(buffers[k])

    def _on_pre_step(self, opt: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        if self._g_big_sq is None:
            return
        g_small_sq = grad_sq_norm(p for group in opt.param_groups for p in group["params"])
        self.ema.update(g_small_sq, self._g_big_sq, self.b_small, self.b_big, self.n_total)
        self._g_big_sq = None

    def capture(self) -> dict[str, Any]:
        return {"ema": self.ema.state(), "rng": self.gen.get_state()}

    def restore(self, state: dict[str, Any]) -> None:
        self.ema = NoiseScaleEMA.from_state(state["ema"])
        self.gen.set_state(state["rng"].cpu())  # a CPU byte tensor on every device
