"""The trial contract: what one trial is given (Ray's params.json) and what it reports per epoch
(result.json), written out once. docs/design.md ("The trial contract") explains it.

Everything else is built from these fields: the sweep's config shares `Recipe`'s fields and
makes trials from `TrainConfig`'s keys, the training loop yields `EpochMetrics`, and the
analysis reads the same names back. Keys are added, never renamed or removed once shipped.

This module imports no torch and no Ray (only the standard library), so that the sweep's config
and the analysis can use it without them.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

PHASES = ("grid", "optuna", "pin", "confirm")  # the sweep's phases, in the order they run
TRIAL_KEYS = ("batch_size", "lr", "warmup_epochs", "seed", "phase")  # what varies per trial
MODELS = ("cnn1", "resnet8", "linear")  # built by trainables.models
OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam", "adamw")  # built by trainables.train
MOMENTUM_OPTIMIZERS = ("momentum", "nesterov")  # SGD with momentum: effective lr = lr / (1 - m)
ADAPTIVE_OPTIMIZERS = ("adam", "adamw")
DEFAULT_MOMENTUM = 0.9  # `momentum: 0` means this for the momentum optimizers and Adam's beta1
TARGET_METRICS = ("val_acc", "val_loss", "train_loss")  # what a steps-to-target may watch
DEFAULT_DATA_DIR = Path(os.environ.get("SWEEP_DATA_DIR", "~/.cache/lr-batch-sweep")).expanduser()


def maximize(metric: str) -> bool:
    """Accuracies are maximised, everything else (losses, errors, step counts) minimised."""
    return "acc" in metric.lower()


def reached(metric: str, value: float, target: float) -> bool:
    """Has `metric` reached `target`? An accuracy from below, a loss from above."""
    if not math.isfinite(value):
        return False
    return value >= target if maximize(metric) else value <= target


@dataclass(frozen=True, kw_only=True)
class Recipe:
    """How every trial of a sweep trains: the keys its trials share (and the sweep config's)."""

    epochs: int = 5  # budget in epochs (examples), identical for every batch size
    dataset: str = "mnist5k"  # a name in trainables.data.DATASETS, or "pkg.module:function"
    model: str = "cnn1"  # one of MODELS, or "pkg.module:function" (trainables.user_code)
    optimizer: str = "sgd"  # one of OPTIMIZERS
    momentum: float = 0.0  # momentum/nesterov's m and Adam's beta1 (0: DEFAULT_MOMENTUM)
    weight_decay: float = 0.0
    schedule: str = "constant"  # after warmup: trainables.schedule.SCHEDULES
    diverge_factor: float = 10.0  # epoch loss above this x the first batch's = diverged (0: off)
    n_train: int = 0  # train on the first n training examples (0 = all)
    cuda_graph: bool = True  # on a GPU, replay small-batch steps as a CUDA graph
    measure_noise_scale: bool = False  # report the gradient noise scale per epoch
    trainable: str = ""  # "pkg.module:function": the user's own training function ("" = ours)
    params: dict[str, Any] = field(default_factory=dict)  # the user's own fixed hyperparameters


@dataclass(frozen=True, kw_only=True)
class TrainConfig(Recipe):
    """One trial's resolved configuration: the flat keys of its params.json."""

    batch_size: int
    lr: float  # peak learning rate, per optimizer step
    warmup_epochs: float = 0.0  # gradual linear warmup length, in epochs (0 = none)
    seed: int = 0  # weight init, dropout and batch order
    phase: str = "grid"  # one of PHASES
    data_dir: str = str(DEFAULT_DATA_DIR)
    target_metric: str = ""  # steps-to-target: "" = off, else one of TARGET_METRICS ...
    target_value: float = 0.0  # ... and the value it must reach
    code_version: str = ""  # the code that ran (provenance; sweep.space.code_version)
    metric: str = "val_loss"  # the sweep's metric: every epoch must report it


@dataclass(frozen=True)
class EpochMetrics:
    """One row of result.json, reported after every epoch."""

    epoch: int
    examples_seen: int
    step: int  # optimizer steps so far
    train_loss: float  # mean over the epoch's batches
    val_loss: float  # NaN once diverged
    val_acc: float  # NaN for regression
    lr_now: float  # lr of the epoch's last step
    diverged: bool  # the trial stopped here: NaN/inf or exploding loss
    timesteps_total: int  # = examples_seen: TensorBoard's batch-size-independent x axis
    train_time_s: float  # trial's own compute time so far (no Ray overhead)
    noise_scale: float = math.nan  # B_simple = tr(Sigma) / |G|^2 (NaN: not measured)
    steps_to_target: float = math.nan  # first step count reaching the target (NaN: not yet)


PARAM_KEYS: tuple[str, ...] = tuple(f.name for f in fields(TrainConfig))
RECIPE_KEYS: tuple[str, ...] = tuple(f.name for f in fields(Recipe))
METRIC_KEYS: tuple[str, ...] = tuple(f.name for f in fields(EpochMetrics))
OBJECTIVES = ("val_loss", "val_acc", "train_loss", "steps_to_target")  # what ranks trials
PROVENANCE_KEYS = ("node_id", "hostname")  # reported beside the metrics by the Ray adapter


def config_from_dict(config: dict[str, Any]) -> TrainConfig:
    """params.json (Ray's config dict) -> TrainConfig; an unknown key fails with the valid ones."""
    unknown = sorted(set(config) - set(PARAM_KEYS))
    if unknown:
        valid = sorted(PARAM_KEYS)
        raise ValueError(f"unknown trial config key(s) {unknown}; valid keys: {valid}")
    return TrainConfig(**config)
