"""Run a sweep on Ray Tune: local Ray or an existing cluster, one experiment, three phases.

The experiment folder is `<storage>/<name>/`: Ray's trial folders (params.json, result.json,
TensorBoard events, checkpoints), `sweep_config.json` (the resolved config) and
`optuna-journal.log` (the Optuna studies). Running again on an unfinished experiment of the
same config resumes it with `Tuner.restore`, never a second `fit()` into the same folder.
"""

from __future__ import annotations

import functools
import json
import math
import os
import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import optuna

from sweep import cluster, failures, preflight, space
from sweep.config import ConfigError, SweepConfig
from sweep.decide import StudyState
from sweep.progress import SweepProgress, forget_last_run, last_run
from sweep.search import PhasedSearcher, Plan
from sweep.storage import Options, check_writable, journal_path
from trainables.contract import maximize

JOURNAL = "optuna-journal.log"
CONFIG_FILE = "sweep_config.json"


def build_plan(cfg: SweepConfig, exp_dir: Path, version: str = "") -> Plan:
    studies = {}
    if cfg.optuna.trials_per_batch_size > 0:
        run = time.strftime("%Y%m%d-%H%M%S")
        for i, b in enumerate(cfg.batch_sizes):
            lo, hi = space.optuna_log10_range(cfg, b)
            studies[b] = StudyState(
                batch_size=b,
                log10_lo=lo,
                log10_hi=hi,
                budget=cfg.optuna.trials_per_batch_size,
                sampler_seed=space.sampler_seed(cfg, i),
                base_name=f"{cfg.name}-{run}-B{b}",
            )
    return Plan(
        grid=space.grid_trials(cfg, version),
        base=space.trial_base(cfg, version),
        batch_sizes=list(cfg.batch_sizes),
        studies=studies,
        warmup_choices=space.warmup_choices(cfg),
        sampler=cfg.optuna.sampler,
        optuna_seed=cfg.seed,
        confirm_top_k=cfg.confirm.top_k,
        confirm_seeds=space.confirm_seeds(cfg),
        max_widenings=cfg.optuna.max_widenings,
        widen_decades=cfg.optuna.widen_decades,
        journal_path=str(exp_dir / JOURNAL),
        metric=cfg.metric,
        mode=cfg.mode,
    )


def planned_counts(cfg: SweepConfig) -> dict[str, int]:
    n_b = len(cfg.batch_sizes)
    return {
        "grid": len(space.grid_trials(cfg)),
        "optuna": n_b * cfg.optuna.trials_per_batch_size,
        "confirm": n_b * cfg.confirm.top_k * cfg.confirm.seeds,
    }


def concurrent_slots(cfg: SweepConfig, cpus: float, gpus: float) -> int:
    if cfg.resources.max_concurrent_trials:
        return cfg.resources.max_concurrent_trials
    slots = max(1, int(cpus // cfg.resources.cpu_per_trial))
    if gpus > 0:
        smallest = min(space.gpu_fraction(cfg, b, True) for b in cfg.batch_sizes)
        if smallest > 0:
            slots = min(slots, max(1, int(gpus / smallest + 1e-9)))
    return slots


def saved_config(exp_dir: Path) -> dict[str, Any] | None:
    path = exp_dir / CONFIG_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def move_aside(exp_dir: Path) -> Path:
    target = exp_dir.with_name(f"{exp_dir.name}.old-{time.strftime('%Y%m%d-%H%M%S')}")
    shutil.move(str(exp_dir), str(target))
    return target


def decide_start(cfg: SweepConfig, exp_dir: Path, mode: str) -> str:
    """'new' or 'restore' for this experiment folder, by `mode` (auto | resume | fresh)."""
    from ray.tune import Tuner

    restorable = exp_dir.is_dir() and Tuner.can_restore(str(exp_dir))
    if mode == "resume" and not restorable:
        raise ConfigError(
            f"--resume: nothing to resume in '{exp_dir}'; run without --resume to start this sweep"
        )
    if mode == "fresh" or not restorable:
        return "new"
    previous = saved_config(exp_dir)
    if previous is not None and previous != json.loads(json.dumps(asdict(cfg))):
        raise ConfigError(
            f"'{exp_dir}' holds a sweep '{cfg.name}' with a different config; "
            "pass --fresh to start over (the old one is moved aside) or --name "
            "to run this one beside it"
        )
    return "restore"


def init_ray(address: str | None, runtime_env: dict[str, Any] | None = None) -> dict[str, float]:
    """Start or join Ray; `runtime_env` ships the user's code to every worker (preflight)."""
    import ray

    # per-epoch checkpoints with num_to_keep force frequent (cheap, local) state snapshots
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    kwargs: dict[str, Any] = {
        "include_dashboard": False,
        "logging_level": "warning",
        "log_to_driver": True,
    }
    cluster.check_reachable(address)  # fails fast on a dead address
    try:
        ray.init(address=address, runtime_env=runtime_env or None, **kwargs)
    except (ConnectionError, ValueError, RuntimeError) as err:
        raise cluster.connect_error(address, err) from None
    return dict(ray.cluster_resources())


def make_tuner(
    cfg: SweepConfig, exp_dir: Path, plan: Plan, slots: int, gpus: float, restore: bool
) -> Any:
    from ray import tune
    from ray.tune.search import ConcurrencyLimiter

    from trainables.ray_adapter import tune_trainable

    gpu_by_batch = {b: space.gpu_fraction(cfg, b, gpus > 0) for b in cfg.batch_sizes}
    trainable = tune.with_resources(
        tune_trainable,
        resources=functools.partial(
            space.trial_resources, cfg.resources.cpu_per_trial, gpu_by_batch
        ),
    )
    if restore:
        return tune.Tuner.restore(
            str(exp_dir), trainable=trainable, resume_unfinished=True, resume_errored=True
        )
    searcher = PhasedSearcher(plan, slots)
    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=ConcurrencyLimiter(searcher, max_concurrent=slots),
            num_samples=-1,
            reuse_actors=True,
            trial_dirname_creator=space.trial_dirname,
            trial_name_creator=space.trial_dirname,
        ),
        run_config=tune.RunConfig(
            name=cfg.name,
            storage_path=str(exp_dir.parent),
            verbose=0,
            checkpoint_config=tune.CheckpointConfig(num_to_keep=cfg.checkpoints_to_keep),
            failure_config=tune.FailureConfig(max_failures=cfg.max_failures),
            callbacks=[SweepProgress(searcher)],
        ),
    )


def run_sweep(
    cfg: SweepConfig,
    storage: Path,
    address: str | None = None,
    mode: str = "auto",
    options: Options | None = None,
) -> Path:
    """Run (or resume) the sweep; return the experiment folder."""
    options = options or Options()
    storage = storage.expanduser().resolve()
    check_writable(storage)
    exp_dir = storage / cfg.name
    start = decide_start(cfg, exp_dir, mode)
    resources = init_ray(address, preflight.runtime_env(cfg))
    cluster.check_cluster(cfg, storage, options)  # prints nodes; node-local storage on >1 node
    cpus, gpus = resources.get("CPU", 1.0), resources.get("GPU", 0.0)
    slots = concurrent_slots(cfg, cpus, gpus)
    if start == "new" and exp_dir.exists():
        print(f"[sweep] --fresh: moved the earlier '{cfg.name}' to {move_aside(exp_dir)}")
    if start == "restore":
        print(f"[sweep] resuming the unfinished sweep in {exp_dir} (pass --fresh to start over)")
    exp_dir.mkdir(parents=True, exist_ok=True, mode=0o755)
    (exp_dir / CONFIG_FILE).write_text(json.dumps(asdict(cfg), indent=1))
    plan = build_plan(cfg, exp_dir, space.code_version())
    plan.journal_path = journal_path(options, exp_dir / JOURNAL)
    counts = planned_counts(cfg)
    print(
        f"[sweep] '{cfg.name}': {sum(counts.values())} trials planned ({counts['grid']} grid, "
        f"{counts['optuna']} optuna, {counts['confirm']} confirm) on {cpus:g} CPUs, "
        f"{gpus:g} GPUs, {slots} at a time; results in {exp_dir}",
        flush=True,
    )
    t0 = time.time()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # our progress lines, not Optuna's
    tuner = make_tuner(cfg, exp_dir, plan, slots, gpus, restore=start == "restore")
    forget_last_run()
    results = tuner.fit()  # Ray absorbs the first Ctrl-C: it saves state and returns
    end = last_run()  # None: the run ended before it could say
    unfinished = len(results) - results.num_terminated - results.num_errors
    if unfinished or (end is not None and not end.finished):
        n_done = end.trials_done if end else len(results) - unfinished
        raise SweepInterrupted(
            f"[sweep] interrupted after {n_done} finished trials; unfinished ones keep their "
            "last epoch checkpoint; run the same command again to resume"
        )
    n_err = results.num_errors
    errors = [str(err) for err in results.errors]
    print(
        f"[sweep] finished {len(results)} trials in {(time.time() - t0) / 60:.1f} min"
        + (f"; {failures.summary(errors)} (see their error.txt)" if n_err else ""),
        flush=True,
    )
    if n_err and n_err == len(results):
        raise failures.AllTrialsFailed(
            f"every trial failed, most often with: {failures.most_common_cause(errors)[0]}; "
            f"see error.txt in the trial folders of {exp_dir}"
        )
    return exp_dir


class SweepInterrupted(RuntimeError):
    """The sweep stopped before its last trial (Ctrl-C); its state is saved for resuming."""


def format_resources(res: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:g}" for k, v in res.items())


def measurement_lines(cfg: SweepConfig) -> list[str]:
    """What the trials measure beyond the contract's quality metrics."""
    out = []
    if cfg.measure_noise_scale:
        out.append(
            "every trial measures the gradient noise scale B_simple (`noise_scale`; "
            "about +50% gradient compute, no CUDA graphs)"
        )
    if cfg.target is not None:
        sign = ">=" if maximize(cfg.target.metric) else "<="
        out.append(
            f"every trial reports its steps to {cfg.target.metric} {sign} "
            f"{cfg.target.value:g} (`steps_to_target`)"
        )
    return out


def dry_run(cfg: SweepConfig, cpus: float, gpus: float) -> str:
    """Text listing every grid trial and its resources, and what follows."""
    slots = concurrent_slots(cfg, cpus, gpus)
    lines = [
        f"sweep '{cfg.name}': {cfg.trainable or f'{cfg.dataset} / {cfg.model}'} / "
        f"{cfg.optimizer}, "
        f"{cfg.epochs} epochs per trial; {cpus:g} CPUs, {gpus:g} GPUs here -> {slots} "
        "trials at a time",
        *measurement_lines(cfg),
        "",
        f"{'#':>4}  {'phase':<6} {'batch_size':>10} {'lr':>10} {'warmup_epochs':>13} "
        f"{'seed':>5}  resources",
    ]
    gpu_by_batch = {b: space.gpu_fraction(cfg, b, gpus > 0) for b in cfg.batch_sizes}
    for i, t in enumerate(space.grid_trials(cfg), 1):
        res = space.trial_resources(cfg.resources.cpu_per_trial, gpu_by_batch, t)
        lines.append(
            f"{i:>4}  {t['phase']:<6} {t['batch_size']:>10} {t['lr']:>10.4g} "
            f"{t['warmup_epochs']:>13g} {t['seed']:>5}  {format_resources(res)}"
        )
    counts = planned_counts(cfg)
    o, c = cfg.optuna, cfg.confirm
    lines.append("")
    if counts["optuna"]:
        lines.append(
            f"then {counts['optuna']} Optuna trials: one study per batch size x "
            f"{o.trials_per_batch_size} trials, lr in linear-rule lr x "
            f"10^[-{o.lr_range_decades:g}, +{o.lr_range_decades:g}], warmup in "
            f"{space.warmup_choices(cfg)}, sampler {o.sampler} (ranges at an edge "
            f"widen up to {o.max_widenings} times, adding trials)"
        )
    else:
        lines.append("no Optuna phase (optuna.trials_per_batch_size: 0)")
    if counts["confirm"]:
        lines.append(
            f"then {counts['confirm']} confirmation trials: the best {c.top_k} lrs "
            f"of each batch size x {c.seeds} new seeds"
        )
    total = sum(counts.values())
    lines.append(f"total: {total} trials, about {math.ceil(total / slots)} rounds of {slots}")
    return "\n".join(lines)
