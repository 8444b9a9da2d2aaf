"""The search space as data: grid trial configs, Optuna ranges, confirmation seeds, resources.

Functions here compute nothing beyond the configurations themselves and live in an importable
module, because Ray's `Tuner.restore` re-imports them (docs/design.md, "Ray and Optuna").
"""

from __future__ import annotations

import importlib.metadata
import math
import subprocess
from dataclasses import fields
from pathlib import Path
from typing import Any

from sweep.config import SweepConfig
from trainables.contract import Recipe

PACKAGE = "lr-batch-sweep"


def code_version() -> str:
    """The code that ran (recorded in every trial's params.json): the installed package's
    version, plus the git commit (`+<commit>[-dirty]`) when the package runs from the top of a
    git checkout, i.e. from this project's own working tree."""
    try:
        version = importlib.metadata.version(PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    root = Path(__file__).resolve().parents[1]  # the folder holding the sweep package
    if _git(root, "rev-parse", "--show-toplevel") != str(root):
        return version  # installed elsewhere, or inside someone else's repository
    commit = _git(root, "describe", "--always", "--dirty")
    return f"{version}+{commit}" if commit else version


def _git(cwd: Path, *args: str) -> str:
    try:
        out = subprocess.run(
            ["git", *args], capture_output=True, text=True, cwd=cwd, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


def trial_base(cfg: SweepConfig, version: str = "") -> dict[str, Any]:
    """Keys shared by every trial of the sweep: the recipe's, plus where the data is, the
    steps-to-target setting, the code version and the metric every epoch must report (the
    params.json contract). A user's own training function (`trainable`) brings its own model
    and data: their keys are recorded empty."""
    recipe = {f.name: getattr(cfg, f.name) for f in fields(Recipe)}
    if cfg.trainable:
        recipe |= {"model": "", "dataset": ""}
    return recipe | {
        "params": dict(cfg.params),
        "data_dir": cfg.resolved_data_dir,
        "code_version": version,
        "target_metric": cfg.target.metric if cfg.target else "",
        "target_value": cfg.target.value if cfg.target else 0.0,
        "metric": cfg.metric,
    }


def trial(
    base: dict[str, Any], batch_size: int, lr: float, warmup_epochs: float, seed: int, phase: str
) -> dict[str, Any]:
    """One trial's config: the shared keys and the ones that vary (contract.TRIAL_KEYS)."""
    return {
        **base,
        "batch_size": batch_size,
        "lr": lr,
        "warmup_epochs": warmup_epochs,
        "seed": seed,
        "phase": phase,
    }


def linear_rule_lr(cfg: SweepConfig, batch_size: int) -> float:
    """lr the linear scaling rule predicts at `batch_size` (per optimizer step)."""
    return cfg.grid.base_lr * batch_size / cfg.grid.base_batch_size


def grid_trials(cfg: SweepConfig, version: str = "") -> list[dict[str, Any]]:
    """The fixed linear-scaling grid: B x lr multiplier x warmup x seed, in batch order."""
    base = trial_base(cfg, version)
    return [
        trial(base, b, linear_rule_lr(cfg, b) * m, w, cfg.seed + s, "grid")
        for b in cfg.batch_sizes
        for m in cfg.grid.lr_multipliers
        for w in cfg.grid.warmup_epochs
        for s in range(cfg.seeds)
    ]


def optuna_log10_range(cfg: SweepConfig, batch_size: int) -> tuple[float, float]:
    """log10 lr bounds of a batch size's study: the linear-rule lr +- D decades, widened to
    hold every grid lr of that batch size (they are told to the study)."""
    center = math.log10(linear_rule_lr(cfg, batch_size))
    grid = [math.log10(linear_rule_lr(cfg, batch_size) * m) for m in cfg.grid.lr_multipliers]
    d = cfg.optuna.lr_range_decades
    return min(center - d, *grid), max(center + d, *grid)


def warmup_choices(cfg: SweepConfig) -> list[float]:
    """Warmup values Optuna may pick (the grid's are included so grid trials can be told)."""
    return sorted(set(cfg.optuna.warmup_epochs) | set(cfg.grid.warmup_epochs))


def confirm_seeds(cfg: SweepConfig) -> list[int]:
    """New seeds for the confirmation phase, disjoint from the grid's."""
    return [cfg.seed + cfg.seeds + i for i in range(cfg.confirm.seeds)]


def sampler_seed(cfg: SweepConfig, batch_index: int) -> int:
    base = cfg.optuna.seed if cfg.optuna.seed is not None else cfg.seed
    return base * 1000 + batch_index


def gpu_fraction(cfg: SweepConfig, batch_size: int, gpus_available: bool) -> float:
    """GPU share of one trial: small batches pack many trials onto a card."""
    r = cfg.resources
    if not isinstance(r.gpu_per_trial, str):
        return r.gpu_per_trial
    if not gpus_available:
        return 0.0
    for limit in sorted(r.gpu_fraction_by_batch):
        if batch_size <= limit:
            return r.gpu_fraction_by_batch[limit]
    return 0.5


def trial_resources(cpu: float, gpu_by_batch: dict[int, float], config: dict) -> dict:
    """Ray resource request of one trial (bound with functools.partial; picklable)."""
    gpu = gpu_by_batch.get(int(config["batch_size"]), 0.0)
    return {"CPU": cpu, "GPU": gpu} if gpu > 0 else {"CPU": cpu}


def trial_dirname(trial: Any) -> str:
    """Short, readable trial folder (and TensorBoard run) name."""
    c = trial.config
    return (
        f"{c.get('phase', 'trial')}_{trial.trial_id}_B{c.get('batch_size')}"
        f"_lr{c.get('lr', 0):.3g}_w{c.get('warmup_epochs', 0):g}_s{c.get('seed', 0)}"
    )
