"""The one training loop: `train(cfg, data)` yields one `Epoch` (metrics + resumable state).

Budget is in epochs, i.e. examples, identical for every batch size: an epoch is
floor(n_train / batch_size) steps of exactly `batch_size` examples drawn by a permutation that
lives on the data's device (no DataLoader, no per-sample Python). A trial diverges when its loss
is NaN/inf or its epoch-mean train loss exceeds `diverge_factor` x the loss of the first batch;
it then yields that epoch with `diverged=True` and stops (no more compute).

Optional measurements: `measure_noise_scale` (the gradient noise scale B_simple, per epoch as
`noise_scale`; trainables.noise_scale) and a target (`target_metric`, `target_value`): the
step at which the metric reached it, interpolated between the evaluations around the crossing
(`steps_to_target`; Shallue et al. 2018). Both are NaN when off (or not reached yet).

Run one configuration by hand (debug mode, no Ray):
    python -m trainables.train --set batch_size=16 --set lr=0.002 --set epochs=2
"""

from __future__ import annotations

import argparse
import functools
import math
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from trainables import fast_step
from trainables.contract import (
    DEFAULT_MOMENTUM,
    MOMENTUM_OPTIMIZERS,
    OPTIMIZERS,
    TARGET_METRICS,
    EpochMetrics,
    TrainConfig,
    config_from_dict,
    reached,
)
from trainables.data import load_dataset
from trainables.models import MODELS, get_model
from trainables.noise_scale import NoiseScaleMeter
from trainables.schedule import lr_at, warmup_steps_for
from trainables.tensor_data import TensorData

EVAL_BATCH = 1000  # validation batch on a GPU
EVAL_BATCH_CPU = 200  # on CPU, activations that stay in cache evaluate ~3x faster than 1000


@dataclass
class Epoch:
    metrics: EpochMetrics
    state: dict[str, Any]  # enough to resume after this epoch (`train(..., resume=state)`)


def make_optimizer(
    cfg: TrainConfig, params: Any, lr: float | torch.Tensor | None = None
) -> torch.optim.Optimizer:
    """`lr`: a device tensor for a CUDA-graph step (then the optimizer reads it on the device:
    fused SGD, capturable Adam/AdamW), else cfg.lr."""
    lr = cfg.lr if lr is None else lr
    graphed = isinstance(lr, torch.Tensor)
    momentum = cfg.momentum or DEFAULT_MOMENTUM
    kw: dict[str, Any] = {"lr": lr, "weight_decay": cfg.weight_decay}
    if cfg.optimizer == "sgd" or cfg.optimizer in MOMENTUM_OPTIMIZERS:
        if cfg.optimizer != "sgd":
            kw.update(momentum=momentum, nesterov=cfg.optimizer == "nesterov")
        return torch.optim.SGD(params, **kw, fused=True if graphed else None)
    adam = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}.get(cfg.optimizer)
    if adam is None:
        raise ValueError(
            f"unknown optimizer '{cfg.optimizer}'; choose from {', '.join(OPTIMIZERS)}"
        )
    return adam(params, **kw, betas=(momentum, 0.999), capturable=graphed)


def loss_fn(task: str, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    if task == "regression":
        return 0.5 * F.mse_loss(out.squeeze(-1), y)
    return F.cross_entropy(out, y)


@torch.no_grad()
def evaluate(model: nn.Module, data: TensorData) -> tuple[float, float]:
    """(mean loss, accuracy) on the validation split, in large batches."""
    model.eval()
    loss_sum, correct = 0.0, 0
    n = data.x_val.shape[0]
    batch = EVAL_BATCH if data.x_val.is_cuda else EVAL_BATCH_CPU
    for i in range(0, n, batch):
        out = model(data.x_val[i : i + batch])
        y = data.y_val[i : i + batch]
        loss_sum += float(loss_fn(data.task, out, y)) * y.shape[0]
        if data.task == "classification":
            correct += int((out.argmax(1) == y).sum())
    model.train()
    acc = correct / n if data.task == "classification" else math.nan
    return loss_sum / n, acc


def crossing_step(step0: int, steps: int, before: float, after: float, target: float) -> float:
    """The step at which the metric crossed `target` between two evaluations `steps` apart
    (at step0 and step0 + steps), interpolated linearly; the later one when `before` is
    unknown or the metric did not move towards the target."""
    if not math.isfinite(before) or before == after:
        return float(step0 + steps)
    frac = (target - before) / (after - before)
    return float(step0 + steps * min(max(frac, 0.0), 1.0))


def _is_diverged(epoch_loss: float, first_loss: float, factor: float) -> bool:
    if not math.isfinite(epoch_loss):
        return True
    return factor > 0 and epoch_loss > factor * max(first_loss, 1e-12)


@dataclass
class Progress:
    """The loop's own counters, which a resumed trial continues from."""

    epoch: int = 0  # epochs finished
    first_loss: float = math.nan  # the first batch's loss: the reference for divergence
    train_time_s: float = 0.0
    steps_to_target: float = math.nan
    target_prev: float = math.nan  # the target metric at the previous evaluation


class TrialState:
    """Everything a trial needs to continue exactly where it stopped, captured after an epoch
    as one dict of tensors and numbers (so `torch.load(..., weights_only=True)` reads it):
    weights, optimizer state, the batch-order, dropout (CPU and GPU) and noise-scale RNG
    streams, the noise-scale averages and the loop's `Progress`."""

    def __init__(
        self,
        model: nn.Module,
        opt: torch.optim.Optimizer,
        order: torch.Generator,
        lr_tensor: torch.Tensor | None,
        meter: NoiseScaleMeter | None,
    ) -> None:
        self.model, self.opt, self.order, self.lr_tensor = model, opt, order, lr_tensor
        self.meter = meter
        self.device = order.device

    def capture(self, progress: Progress) -> dict[str, Any]:
        state = {
            "model": self.model.state_dict(),
            "optimizer": self.opt.state_dict(),
            "order_rng": self.order.get_state(),
            "torch_rng": torch.get_rng_state(),
            **asdict(progress),
        }
        if self.device.type == "cuda":
            state["cuda_rng"] = torch.cuda.get_rng_state(self.device)
        if self.meter is not None:
            state["noise_scale"] = self.meter.capture()
        return state

    def restore(self, state: dict[str, Any]) -> Progress:
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])
        if self.lr_tensor is not None:  # the loaded state holds a copy; the graph needs ours
            for group in self.opt.param_groups:
                group["lr"] = self.lr_tensor
        self.order.set_state(state["order_rng"].cpu())  # a CPU byte tensor on every device
        torch.set_rng_state(state["torch_rng"])
        if "cuda_rng" in state and self.device.type == "cuda":  # dropout's stream on the GPU
            torch.cuda.set_rng_state(state["cuda_rng"].cpu(), self.device)
        if self.meter is not None and "noise_scale" in state:
            self.meter.restore(state["noise_scale"])
        return Progress(
            epoch=int(state["epoch"]),
            first_loss=float(state["first_loss"]),
            train_time_s=float(state["train_time_s"]),
            steps_to_target=float(state.get("steps_to_target", math.nan)),
            target_prev=float(state.get("target_prev", math.nan)),
        )


def train(
    cfg: TrainConfig, data: TensorData, resume: dict[str, Any] | None = None
) -> Iterator[Epoch]:
    """Train one configuration; yield after every epoch. `resume` = an earlier Epoch.state."""
    device = data.x_train.device
    n_train = min(cfg.n_train or data.n_train, data.n_train)
    steps_per_epoch = n_train // cfg.batch_size
    if steps_per_epoch < 1:
        raise ValueError(f"batch_size {cfg.batch_size} exceeds the {n_train} training examples")
    if cfg.target_metric and cfg.target_metric not in TARGET_METRICS:
        raise ValueError(
            f"unknown target_metric '{cfg.target_metric}'; choose from "
            f"{', '.join(TARGET_METRICS)} (or '' for none)"
        )
    total_steps = steps_per_epoch * cfg.epochs
    warmup_steps = warmup_steps_for(cfg.warmup_epochs, steps_per_epoch)

    torch.manual_seed(cfg.seed)  # init and dropout
    model = get_model(cfg.model, cfg.params)(data.in_shape, data.num_outputs).to(device)
    x_all, y_all = data.x_train[:n_train], data.y_train[:n_train]
    # A user's own model runs eagerly in NCHW: it may reshape with .view (which NHWC breaks),
    # or take data-dependent paths and sync with the CPU (which one captured graph would
    # freeze or break).
    registered = cfg.model in MODELS
    if registered and fast_step.prefer_channels_last(device, x_all):
        model = fast_step.to_channels_last(model)
    graphed = fast_step.use_cuda_graph(
        cfg.cuda_graph and not cfg.measure_noise_scale and registered,
        device,
        cfg.batch_size,
        total_steps,
    )
    lr_tensor = torch.tensor(cfg.lr, device=device) if graphed else None
    opt = make_optimizer(cfg, model.parameters(), lr_tensor)
    inputs = fast_step.StepInputs(model, opt, functools.partial(loss_fn, data.task), x_all, y_all)
    meter = (
        NoiseScaleMeter(inputs, cfg.batch_size, steps_per_epoch, cfg.seed)
        if cfg.measure_noise_scale
        else None
    )
    order = torch.Generator(device=device).manual_seed(cfg.seed)
    state = TrialState(model, opt, order, lr_tensor, meter)
    progress = Progress() if resume is None else state.restore(resume)
    step = (
        fast_step.GraphStep(inputs, lr_tensor, cfg.batch_size)
        if lr_tensor is not None
        else fast_step.EagerStep(inputs)
    )

    if cfg.target_metric in ("val_loss", "val_acc") and progress.epoch == 0:
        # the metric before the first step, so that the first epoch's crossing interpolates
        val0 = dict(zip(("val_loss", "val_acc"), evaluate(model, data), strict=True))
        progress.target_prev = val0[cfg.target_metric]
    model.train()
    for epoch in range(progress.epoch + 1, cfg.epochs + 1):
        t0 = time.perf_counter()
        perm = torch.randperm(n_train, device=device, generator=order)
        loss_sum = torch.zeros((), device=device)
        step0 = (epoch - 1) * steps_per_epoch
        lr = cfg.lr
        for i in range(steps_per_epoch):
            lr = lr_at(step0 + i, cfg.lr, warmup_steps, total_steps, cfg.schedule)
            if meter is not None:
                meter.before_step(step0 + i)
            loss = step(perm[i * cfg.batch_size : (i + 1) * cfg.batch_size], lr)
            loss_sum += loss
            if math.isnan(progress.first_loss):
                progress.first_loss = float(loss)
        train_loss = float(loss_sum) / steps_per_epoch
        diverged = _is_diverged(train_loss, progress.first_loss, cfg.diverge_factor)
        val_loss, val_acc = (math.nan, math.nan) if diverged else evaluate(model, data)
        diverged = diverged or not math.isfinite(val_loss)
        progress.epoch = epoch
        progress.train_time_s += time.perf_counter() - t0
        values = {"val_acc": val_acc, "val_loss": val_loss, "train_loss": train_loss}
        if cfg.target_metric:
            now = values[cfg.target_metric]
            if math.isnan(progress.steps_to_target) and reached(
                cfg.target_metric, now, cfg.target_value
            ):
                progress.steps_to_target = crossing_step(
                    step0, steps_per_epoch, progress.target_prev, now, cfg.target_value
                )
            progress.target_prev = now
        examples = epoch * steps_per_epoch * cfg.batch_size
        metrics = EpochMetrics(
            epoch=epoch,
            examples_seen=examples,
            step=epoch * steps_per_epoch,
            train_loss=train_loss,
            val_loss=val_loss,
            val_acc=val_acc,
            lr_now=lr,
            diverged=diverged,
            timesteps_total=examples,
            train_time_s=progress.train_time_s,
            noise_scale=math.nan if meter is None else meter.value,
            steps_to_target=progress.steps_to_target,
        )
        yield Epoch(metrics, state.capture(progress))
        if diverged:
            return


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Train one configuration (no Ray).")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    import yaml

    overrides = {k: yaml.safe_load(v) for k, v in (s.split("=", 1) for s in args.set)}
    cfg = config_from_dict({"batch_size": 8, "lr": 0.001, **overrides})
    torch.set_num_threads(1)
    data = load_dataset(cfg.dataset, cfg.data_dir, params=cfg.params)
    for ep in train(cfg, data):
        print(
            {k: round(v, 4) if isinstance(v, float) else v for k, v in asdict(ep.metrics).items()}
        )


if __name__ == "__main__":
    main()
