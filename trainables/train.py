"""The one training loop: `train(cfg, data)` yields one `Epoch` (metrics + resumable state).

Budget is in epochs, i.e. examples, identical for every batch size: an epoch is
floor(n_train / batch_size) steps of exactly `batch_size` examples drawn by a permutation that
lives on the data's device (no DataLoader, no per-sample Python). A trial diverges when its loss
is NaN/inf or its epoch-mean train loss exceeds `diverge_factor` x the loss of the first batch;
it then yields that epoch with `diverged=True` and stops (no more compute).

Optional measurements: `measure_noise_scale` (the gradient noise scale B_simple, per epoch as
`noise_scale`; trainables.noise_scale) and a target (`target_metric`, `target_value`): the
first step count, at epoch granularity, at which the metric reached it (`steps_to_target`;
Shallue et al. 2018). Both are NaN when off (or not reached yet).

Run one configuration by hand (debug mode, no Ray):
    python -m trainables.train --set batch_size=16 --set lr=0.002 --set epochs=2
"""

from __future__ import annotations

import argparse
import functools
import math
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from trainables import fast_step, noise_scale
from trainables.data import DEFAULT_DATA_DIR, TensorData, load_dataset
from trainables.models import get_model
from trainables.schedule import lr_at, warmup_steps_for

OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam", "adamw")
EVAL_BATCH = 1000  # validation batch on a GPU
EVAL_BATCH_CPU = 200  # on CPU, activations that stay in cache evaluate ~3x faster than 1000
TARGET_METRICS = ("val_acc", "val_loss", "train_loss")  # an accuracy reaches its target from
# below (>= value), a loss from above (<= value)


@dataclass(frozen=True)
class TrainConfig:
    """One trial's resolved configuration: the flat keys of Ray's params.json."""

    batch_size: int
    lr: float  # peak learning rate, per optimizer step
    warmup_epochs: float = 0.0  # gradual linear warmup length, in epochs (0 = none)
    seed: int = 0
    epochs: int = 5  # budget in epochs (examples), equal for every batch size
    dataset: str = "mnist5k"
    model: str = "cnn1"
    optimizer: str = "sgd"
    momentum: float = 0.0  # used by momentum/nesterov (default 0.9 there) and adam's beta1
    weight_decay: float = 0.0
    phase: str = "grid"  # grid | optuna | confirm
    schedule: str = "constant"  # after warmup: constant | cosine
    diverge_factor: float = 10.0  # loss above this x the first batch's loss = diverged
    data_dir: str = str(DEFAULT_DATA_DIR)
    n_train: int = 0  # use only the first n training examples (0 = all)
    cuda_graph: bool = True  # on a GPU, replay the step as a CUDA graph (trainables.fast_step)
    measure_noise_scale: bool = False  # report B_simple per epoch (no CUDA graph while on)
    target_metric: str = ""  # steps-to-target: "" = off, else one of TARGET_METRICS
    target_value: float = 0.0  # ... the value it must reach
    fault_kill_at_epoch: int = 0  # tests only: SIGKILL own worker once after this epoch
    code_version: str = ""  # git commit of the sweep's code (provenance; not used here)


@dataclass(frozen=True)
class EpochMetrics:
    """One row of result.json (the metric keys of DESIGN.md's contract)."""

    epoch: int
    examples_seen: int
    step: int
    train_loss: float
    val_loss: float
    val_acc: float
    lr_now: float
    diverged: bool
    timesteps_total: int  # = examples_seen: TensorBoard's batch-size-independent x axis
    train_time_s: float  # trial's own compute time so far (no Ray overhead)
    noise_scale: float = math.nan  # B_simple = tr(Sigma) / |G|^2 (NaN: not measured)
    steps_to_target: float = math.nan  # first step count reaching the target (NaN: not yet)


@dataclass
class Epoch:
    metrics: EpochMetrics
    state: dict[str, Any]  # enough to resume after this epoch (`train(..., resume=state)`)


def config_from_dict(config: dict[str, Any]) -> TrainConfig:
    """Ray's dict -> TrainConfig; an unknown key fails loudly with the valid ones."""
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(config) - known)
    if unknown:
        raise ValueError(f"unknown trial config key(s) {unknown}; valid keys: {sorted(known)}")
    return TrainConfig(**config)


def make_optimizer(
    cfg: TrainConfig, params: Any, lr: float | torch.Tensor | None = None
) -> torch.optim.Optimizer:
    """`lr`: a device tensor for a CUDA-graph step (then the optimizer reads it on the device:
    fused SGD, capturable Adam/AdamW), else cfg.lr."""
    lr = cfg.lr if lr is None else lr
    graphed = isinstance(lr, torch.Tensor)
    sgd_kw: dict[str, Any] = {"fused": True} if graphed else {}
    adam_kw: dict[str, Any] = {"capturable": True} if graphed else {}
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, weight_decay=cfg.weight_decay, **sgd_kw)
    if cfg.optimizer in ("momentum", "nesterov"):
        return torch.optim.SGD(
            params, lr=lr, momentum=cfg.momentum or 0.9,
            nesterov=cfg.optimizer == "nesterov", weight_decay=cfg.weight_decay, **sgd_kw,
        )
    betas = (cfg.momentum or 0.9, 0.999)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=lr, betas=betas, weight_decay=cfg.weight_decay,
                                **adam_kw)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=lr, betas=betas, weight_decay=cfg.weight_decay,
                                 **adam_kw)
    raise ValueError(f"unknown optimizer '{cfg.optimizer}'; choose from {', '.join(OPTIMIZERS)}")


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


def target_reached(metric: str, value: float, target: float) -> bool:
    """Has `metric` reached `target`? Accuracies from below, losses from above."""
    if not math.isfinite(value):
        return False
    return value >= target if "acc" in metric else value <= target


def _is_diverged(epoch_loss: float, first_loss: float, factor: float) -> bool:
    if not math.isfinite(epoch_loss):
        return True
    return factor > 0 and epoch_loss > factor * max(first_loss, 1e-12)


def train(
    cfg: TrainConfig, data: TensorData, resume: dict[str, Any] | None = None
) -> Iterator[Epoch]:
    """Train one configuration; yield after every epoch. `resume` = an earlier Epoch.state."""
    device = data.x_train.device
    n_train = min(cfg.n_train or data.n_train, data.n_train)
    steps_per_epoch = n_train // cfg.batch_size
    if steps_per_epoch < 1:
        raise ValueError(f"batch_size {cfg.batch_size} exceeds the {n_train} training examples")
    total_steps = steps_per_epoch * cfg.epochs
    warmup_steps = warmup_steps_for(cfg.warmup_epochs, steps_per_epoch)
    if cfg.target_metric and cfg.target_metric not in TARGET_METRICS:
        raise ValueError(f"unknown target_metric '{cfg.target_metric}'; choose from "
                         f"{', '.join(TARGET_METRICS)} (or '' for none)")

    torch.manual_seed(cfg.seed)  # init and dropout
    model = get_model(cfg.model)(data.in_shape, data.num_outputs).to(device)
    x_all, y_all = data.x_train[:n_train], data.y_train[:n_train]
    if fast_step.prefer_channels_last(device, x_all):
        model = fast_step.to_channels_last(model)
    graphed = fast_step.use_cuda_graph(cfg.cuda_graph and not cfg.measure_noise_scale, device,
                                       cfg.batch_size, total_steps)
    lr_tensor = torch.tensor(cfg.lr, device=device) if graphed else None
    opt = make_optimizer(cfg, model.parameters(), lr_tensor)
    order_gen = torch.Generator(device=device).manual_seed(cfg.seed)
    first_epoch, first_loss, time_s = 1, math.nan, 0.0
    reached = math.nan if resume is None else float(resume.get("steps_to_target", math.nan))
    if resume is not None:
        model.load_state_dict(resume["model"])
        opt.load_state_dict(resume["optimizer"])
        if lr_tensor is not None:  # the loaded state holds a copy; the graph needs ours
            for group in opt.param_groups:
                group["lr"] = lr_tensor
        order_gen.set_state(resume["order_rng"].cpu() if device.type == "cpu"
                            else resume["order_rng"])
        torch.set_rng_state(resume["torch_rng"])
        if "cuda_rng" in resume and device.type == "cuda":  # dropout's stream on the GPU
            torch.cuda.set_rng_state(resume["cuda_rng"].cpu(), device)
        first_epoch = int(resume["epoch"]) + 1
        first_loss, time_s = float(resume["first_loss"]), float(resume["train_time_s"])
    loss_of = functools.partial(loss_fn, data.task)
    step = (fast_step.GraphStep(model, opt, loss_of, x_all, y_all, lr_tensor, cfg.batch_size)
            if lr_tensor is not None else fast_step.EagerStep(model, opt, loss_of, x_all, y_all))
    meter = (noise_scale.NoiseScaleMeter(model, opt, loss_of, x_all, y_all, cfg.batch_size,
                                         steps_per_epoch, cfg.seed,
                                         None if resume is None else resume.get("noise_scale"))
             if cfg.measure_noise_scale else None)

    model.train()
    for epoch in range(first_epoch, cfg.epochs + 1):
        t0 = time.perf_counter()
        perm = torch.randperm(n_train, device=device, generator=order_gen)
        loss_sum = torch.zeros((), device=device)
        step0 = (epoch - 1) * steps_per_epoch
        lr = cfg.lr
        for i in range(steps_per_epoch):
            lr = lr_at(step0 + i, cfg.lr, warmup_steps, total_steps, cfg.schedule)
            if meter is not None:
                meter.before_step(step0 + i)
            loss = step(perm[i * cfg.batch_size : (i + 1) * cfg.batch_size], lr)
            loss_sum += loss
            if math.isnan(first_loss):
                first_loss = float(loss)
        train_loss = float(loss_sum) / steps_per_epoch
        diverged = _is_diverged(train_loss, first_loss, cfg.diverge_factor)
        val_loss, val_acc = (math.nan, math.nan) if diverged else evaluate(model, data)
        diverged = diverged or not math.isfinite(val_loss)
        time_s += time.perf_counter() - t0
        examples = epoch * steps_per_epoch * cfg.batch_size
        values = {"val_acc": val_acc, "val_loss": val_loss, "train_loss": train_loss}
        if cfg.target_metric and math.isnan(reached) and target_reached(
                cfg.target_metric, values[cfg.target_metric], cfg.target_value):
            reached = float(epoch * steps_per_epoch)
        metrics = EpochMetrics(
            epoch=epoch, examples_seen=examples, step=epoch * steps_per_epoch,
            train_loss=train_loss, val_loss=val_loss, val_acc=val_acc, lr_now=lr,
            diverged=diverged, timesteps_total=examples, train_time_s=time_s,
            noise_scale=math.nan if meter is None else meter.value, steps_to_target=reached,
        )
        state = {
            "model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": epoch,
            "order_rng": order_gen.get_state(), "torch_rng": torch.get_rng_state(),
            **({"cuda_rng": torch.cuda.get_rng_state(device)} if device.type == "cuda" else {}),
            "first_loss": first_loss, "train_time_s": time_s, "steps_to_target": reached,
            **({"noise_scale": meter.state()} if meter is not None else {}),
        }
        yield Epoch(metrics, state)
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
    data = load_dataset(cfg.dataset, cfg.data_dir)
    for ep in train(cfg, data):
        print({k: round(v, 4) if isinstance(v, float) else v
               for k, v in asdict(ep.metrics).items()})


if __name__ == "__main__":
    main()
