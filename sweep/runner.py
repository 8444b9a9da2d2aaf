"""Run a sweep on Ray Tune: local Ray or an existing cluster, one experiment, three phases.

The experiment folder is `<storage>/<name>/`: Ray's trial folders (params.json, result.json,
TensorBoard events, checkpoints), `sweep_config.json` (the resolved config) and
`optuna-journal.log` (the Optuna studies). Running again on an unfinished experiment of the
same config resumes it, whenever and however the previous run was stopped:

- one owner: the run locks the experiment folder (`sweep.owner`); a second run on a live
  experiment exits with code 2 and says which process holds it. Only `--fresh` moves a folder.
- one source of truth: the searcher is rebuilt from the trial folders and the Optuna journal
  (`sweep.resume`, `sweep.search`); Ray continues the unfinished trials it knows from their last
  epoch checkpoint (`tune.run(..., resume_config=...)` with a searcher and callbacks built here,
  never unpickled from the folder), and runs again those it does not know.
- `sweep_run.json` names the run's Optuna studies and where the journal is, relative to the
  experiment folder when it is inside it, so a moved or copied folder resumes where it now is.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import re
import secrets
import shutil
import signal
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import optuna

from sweep import (
    cluster,
    design,
    failures,
    owner,
    preflight,
    resume,
    space,
    stopping,
    studies,
    trackers,
)
from sweep.adaptive import AdaptivePlan
from sweep.config import ConfigError, SweepConfig, budget_text
from sweep.decide import StudyState, max_extra_trials
from sweep.progress import SweepProgress
from sweep.search import PhasedSearcher, Plan, SweepSearch
from sweep.stopping import RESUME_HINT, SweepStopped
from sweep.storage import Options, check_writable, journal_path
from trainables.contract import ADAPTIVE_OPTIMIZERS, maximize

JOURNAL = "optuna-journal.log"
CONFIG_FILE = "sweep_config.json"
RUN_FILE = "sweep_run.json"  # {"studies": "<name>-<run>", "journal": path (relative: inside)}


def new_run_name(cfg: SweepConfig) -> str:
    """The prefix of a new sweep's study names: its name, start time and a random suffix."""
    return f"{cfg.name}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"


def build_plan(
    cfg: SweepConfig, exp_dir: Path, version: str = "", run_name: str | None = None
) -> Plan:
    run_name = run_name or new_run_name(cfg)
    if cfg.design == "adaptive":
        return _adaptive_plan(cfg, exp_dir, version, run_name)
    by_batch = {}
    if cfg.optuna.trials_per_batch_size > 0:
        for i, b in enumerate(cfg.batch_sizes):
            lo, hi = space.optuna_log10_range(cfg, b)
            by_batch[b] = StudyState(
                batch_size=b,
                log10_lo=lo,
                log10_hi=hi,
                budget=cfg.optuna.trials_per_batch_size,
                sampler_seed=space.sampler_seed(cfg, i),
                base_name=f"{run_name}-B{b}",
            )
    return Plan(
        grid=space.grid_trials(cfg, version),
        base=space.trial_base(cfg, version),
        batch_sizes=list(cfg.batch_sizes),
        studies=by_batch,
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
        exp_dir=str(exp_dir),
    )


def _adaptive_plan(cfg: SweepConfig, exp_dir: Path, version: str, run_name: str) -> Plan:
    """design: adaptive: one study per batch size the loop may use (created when first asked),
    trials without the noise-scale measurement but for one per batch size at the end."""
    half = cfg.optuna.lr_range_decades
    centre = {b: math.log10(space.linear_rule_lr(cfg, b)) for b in cfg.all_batch_sizes}
    studies = {
        b: StudyState(
            batch_size=b,
            log10_lo=centre[b] - half,
            log10_hi=centre[b] + half,
            budget=3 * design.MIN_TRIALS,  # the sampler explores at random for MIN_TRIALS
            sampler_seed=space.sampler_seed(cfg, i),
            base_name=f"{run_name}-B{b}",
        )
        for i, b in enumerate(cfg.all_batch_sizes)
    }
    grid = [{**t, "measure_noise_scale": False} for t in space.grid_trials(cfg, version)]
    return Plan(
        grid=grid,
        base={**space.trial_base(cfg, version), "measure_noise_scale": False},
        batch_sizes=cfg.search_batch_sizes,
        studies=studies,
        warmup_choices=space.warmup_choices(cfg),
        sampler=cfg.optuna.sampler,
        optuna_seed=cfg.seed,
        confirm_top_k=0,
        confirm_seeds=[],
        max_widenings=0,
        widen_decades=cfg.optuna.widen_decades,
        journal_path=str(exp_dir / JOURNAL),
        metric=cfg.metric,
        mode=cfg.mode,
        exp_dir=str(exp_dir),
        adaptive=AdaptivePlan(
            batch_sizes=cfg.search_batch_sizes,
            batch_sizes_max=cfg.adaptive.batch_sizes_max,
            centre=centre,
            start_half=half,
            budget=design.Budget(cfg.budget.trials, cfg.budget.minutes),
            replicates=cfg.adaptive.replicates,
            constant=cfg.optimizer in ADAPTIVE_OPTIMIZERS,
            measure_noise_scale=cfg.measure_noise_scale and not cfg.trainable,
            seed=cfg.seed,
            pin_trials=cfg.adaptive.pin_trials,
        ),
    )


def planned_counts(cfg: SweepConfig) -> dict[str, int]:
    n_b = len(cfg.batch_sizes)
    return {
        "grid": len(space.grid_trials(cfg)),
        "optuna": n_b * cfg.optuna.trials_per_batch_size,
        "confirm": n_b * cfg.confirm.top_k * cfg.confirm.seeds,
    }


def planned_text(cfg: SweepConfig) -> str:
    """'98 trials planned (14 grid, 56 optuna, 28 confirm) + up to 98 more (widening,
    bracketing)': the plan, and the most that the Optuna studies can add to it."""
    if cfg.design == "adaptive":
        n_grid = len(space.grid_trials(cfg))
        measure = " + one noise-scale trial per batch size" if cfg.measure_noise_scale else ""
        n_pin = cfg.adaptive.pin_trials
        pins = f" + {n_pin} pin trials per batch size once decided" if n_pin else ""
        return (
            f"{n_grid} grid trials, then adaptive trials until the verdict is decided "
            f"({budget_text(cfg)}){pins}{measure}"
        )
    counts = planned_counts(cfg)
    more = len(cfg.batch_sizes) * max_extra_trials(
        cfg.optuna.trials_per_batch_size, cfg.optuna.max_widenings
    )
    return (
        f"{sum(counts.values())} trials planned ({counts['grid']} grid, {counts['optuna']} "
        f"optuna, {counts['confirm']} confirm)"
        + (f" + up to {more} more (widening, bracketing)" if more else "")
    )


def concurrent_slots(cfg: SweepConfig, cpus: float, gpus: float) -> int:
    if cfg.resources.max_concurrent_trials:
        return cfg.resources.max_concurrent_trials
    slots = max(1, int(cpus // cfg.resources.cpu_per_trial))
    if gpus > 0:
        smallest = min(space.gpu_fraction(cfg, b, True) for b in cfg.all_batch_sizes)
        if smallest > 0:
            slots = min(slots, max(1, int(gpus / smallest + 1e-9)))
    return slots


def saved_config(exp_dir: Path) -> dict[str, Any] | None:
    path = exp_dir / CONFIG_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError):
        raise ConfigError(
            f"'{path}' is damaged (not JSON); restore it from the config you ran, or pass "
            "--fresh to start over (the old folder is moved aside, nothing is deleted)"
        ) from None


def move_aside(exp_dir: Path) -> Path:
    target = exp_dir.with_name(f"{exp_dir.name}.old-{time.strftime('%Y%m%d-%H%M%S')}")
    shutil.move(str(exp_dir), str(target))
    return target


NOT_COMPARED = ("loggers",)  # where the curves also go: a resume may add or drop a tracker


def comparable(config: dict[str, Any] | None) -> dict[str, Any] | None:
    """A saved or current config without the keys that do not change what trials compute."""
    return None if config is None else {k: v for k, v in config.items() if k not in NOT_COMPARED}


def decide_start(cfg: SweepConfig, exp_dir: Path, mode: str) -> str:
    """'new', 'fresh' (move the old folder aside first) or 'resume', by `mode` (auto | resume
    | fresh); ConfigError when the folder cannot be used as asked. Reads, never writes."""
    content = exp_dir.is_dir() and any(p.name != owner.LOCK_FILE for p in exp_dir.iterdir())
    ours = (exp_dir / CONFIG_FILE).is_file()
    if mode == "resume" and not ours:
        raise ConfigError(
            f"--resume: nothing to resume in '{exp_dir}'; run without --resume to start this sweep"
        )
    if not content:
        return "new"
    if mode == "fresh":
        return "fresh"
    if not ours:
        raise ConfigError(
            f"'{exp_dir}' exists and holds no sweep (no {CONFIG_FILE}); pass --name or "
            "--storage for another folder, or --fresh to move this one aside"
        )
    previous = saved_config(exp_dir)
    if comparable(previous) != comparable(json.loads(json.dumps(asdict(cfg)))):
        raise ConfigError(
            f"'{exp_dir}' holds a sweep '{cfg.name}' with a different config; "
            "pass --fresh to start over (the old one is moved aside) or --name "
            "to run this one beside it"
        )
    return "resume"


def read_run_file(exp_dir: Path, cfg: SweepConfig) -> dict[str, str]:
    """The run's study-name prefix and journal; for a folder written before sweep_run.json
    existed, the newest studies of this sweep's name in the journal."""
    path = exp_dir / RUN_FILE
    if path.is_file():
        try:
            run = json.loads(path.read_text())
            return {"studies": str(run["studies"]), "journal": str(run["journal"])}
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            pass
    names = []
    if (exp_dir / JOURNAL).is_file():
        storage = optuna.storages.JournalStorage(
            optuna.storages.journal.JournalFileBackend(str(exp_dir / JOURNAL))
        )
        pattern = re.compile(re.escape(cfg.name) + r"-(\d{8}-\d{6}(?:-[0-9a-f]{4})?)-B\d+")
        names = [
            m.group(0).rsplit("-B", 1)[0]
            for n in optuna.get_all_study_names(storage)
            if (m := pattern.match(n))
        ]
    return {"studies": max(names, default=new_run_name(cfg)), "journal": JOURNAL}


def journal_of(exp_dir: Path, run: dict[str, str], options: Options) -> Path:
    """--journal if given, else the run's journal (a relative path: in the experiment)."""
    recorded = Path(run["journal"])
    default = recorded if recorded.is_absolute() else exp_dir / recorded
    return Path(journal_path(options, default)).resolve()


def write_run_file(exp_dir: Path, run_name: str, journal: Path) -> None:
    inside = journal.parent == exp_dir.resolve()
    run = {"studies": run_name, "journal": journal.name if inside else str(journal)}
    resume.write_atomically(exp_dir / RUN_FILE, json.dumps(run, indent=1) + "\n")


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


def run_tune(
    cfg: SweepConfig,
    exp_dir: Path,
    searcher: PhasedSearcher,
    slots: int,
    gpus: float,
    continue_ray: bool,
) -> Any:
    """Ray Tune's run of the experiment; with `continue_ray`, Ray first restores the trials of
    its own (checked) state, to continue the unfinished ones from their checkpoints."""
    from ray import tune
    from ray.tune.search import ConcurrencyLimiter

    from trainables.ray_adapter import tune_trainable

    gpu_by_batch = {b: space.gpu_fraction(cfg, b, gpus > 0) for b in cfg.all_batch_sizes}
    trainable = tune.with_resources(
        tune_trainable,
        resources=functools.partial(
            space.trial_resources, cfg.resources.cpu_per_trial, gpu_by_batch
        ),
    )
    experiment = tune.Experiment(
        cfg.name,
        trainable,
        num_samples=sys.maxsize,  # until the searcher says it has finished
        storage_path=str(exp_dir.parent),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=cfg.checkpoints_to_keep),
        max_failures=cfg.max_failures,
        trial_name_creator=space.trial_dirname,
        trial_dirname_creator=space.trial_dirname,
    )
    search = SweepSearch(ConcurrencyLimiter(searcher, max_concurrent=slots))
    search.add_configurations([experiment])  # Ray skips this itself when it resumes
    resume_config = (
        tune.ResumeConfig(errored=tune.ResumeConfig.ResumeType.RESUME) if continue_ray else None
    )
    logging.getLogger("ray.tune.tune").addFilter(_NoTuneResumeAdvice())
    with stopping.tune_running():  # Ctrl-C and SIGTERM end Ray Tune's loop gracefully
        return tune.run(
            experiment,
            search_alg=search,
            callbacks=[SweepProgress(searcher), *trackers.callbacks(cfg, exp_dir)],
            reuse_actors=True,
            verbose=0,
            raise_on_failed_trial=False,
            resume_config=resume_config,
        )


class _NoTuneResumeAdvice(logging.Filter):
    """Ray Tune's own lines about a stop: the sweep says what happened and how to resume."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = str(record.msg)
        return not text.startswith(
            ("Stop signal received", "Experiment has been interrupted", "Trials did not complete")
        )


def error_texts(trials: list[Any]) -> list[str]:
    """The error.txt of every trial that ended failed in this run."""
    texts = []
    for trial in trials:
        if trial.status != "ERROR":
            continue
        path = Path(trial.path or "", "error.txt")
        try:
            texts.append(path.read_text())
        except (OSError, UnicodeDecodeError):
            texts.append("unknown error (no error.txt)")
    return texts


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
    owner.check_free(exp_dir)  # a live run holds it: say so before Ray starts
    decide_start(cfg, exp_dir, mode)  # bad input fails here, before Ray starts
    note = owner.keep_token_private(address)
    if note:
        print(note, flush=True)
    try:
        with stopping.signals_seen() as seen:
            resources = init_ray(address, preflight.runtime_env(cfg))
        stopping.install()  # again: ray.init replaced the SIGTERM handler with its own
    except SystemExit as stop:  # SIGTERM meanwhile: ray.init's handler calls sys.exit(15)
        if stop.code == signal.SIGTERM:
            raise stopping.Terminated from None
        raise
    if signal.SIGTERM in seen:  # ...or its SystemExit was swallowed (`signals_seen`)
        raise stopping.Terminated
    if signal.SIGINT in seen:  # a KeyboardInterrupt swallowed the same way (an at-fork callback)
        raise KeyboardInterrupt
    cluster.check_cluster(cfg, storage, options)  # prints nodes; node-local storage on >1 node
    cpus, gpus = resources.get("CPU", 1.0), resources.get("GPU", 0.0)
    slots = concurrent_slots(cfg, cpus, gpus)

    exp_dir.mkdir(parents=True, exist_ok=True, mode=0o755)
    _held.append(owner.ExperimentLock(exp_dir).acquire())  # until this process ends
    start = decide_start(cfg, exp_dir, mode)  # again: this run owns the folder now
    if start == "fresh":
        print(f"[sweep] --fresh: moved the earlier '{cfg.name}' to {move_aside(exp_dir)}")
        exp_dir.mkdir(mode=0o755)
        _held.append(owner.ExperimentLock(exp_dir).acquire())
    history = None
    if start == "resume":
        run = read_run_file(exp_dir, cfg)
        history = resume.prepare(exp_dir)
        print(f"[sweep] resuming the unfinished sweep in {exp_dir} (pass --fresh to start over)")
        for line in history.notes:
            print(line, flush=True)
    else:
        run = {"studies": new_run_name(cfg), "journal": JOURNAL}
        resume.write_atomically(exp_dir / CONFIG_FILE, json.dumps(asdict(cfg), indent=1))
    journal = journal_of(exp_dir, run, options)
    write_run_file(exp_dir, run["studies"], journal)
    repaired = studies.repair_journal(str(journal), sole_user=journal.parent == exp_dir)
    if repaired:
        print(repaired, flush=True)
    plan = build_plan(cfg, exp_dir, space.code_version(), run["studies"])
    plan.journal_path = str(journal)
    print(
        f"[sweep] '{cfg.name}': {planned_text(cfg)} on {cpus:g} CPUs, {gpus:g} GPUs, "
        f"{slots} at a time; results in {exp_dir}",
        flush=True,
    )
    t0 = time.time()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # our progress lines, not Optuna's
    searcher = PhasedSearcher(plan, slots, history)
    if history is not None:
        st = searcher.state
        print(
            f"[sweep] {len(st.done)} trials finished; {len(st.live)} continue from their last "
            f"checkpoint, {len(st.requeue)} start again",
            flush=True,
        )
    ray_resumes = history is not None and history.ray_resumes
    analysis = run_tune(cfg, exp_dir, searcher, slots, gpus, continue_ray=ray_resumes)
    trials = analysis.trials  # Ray absorbs Ctrl-C (and SIGTERM): it saves state and returns
    unfinished = [t for t in trials if t.status not in ("TERMINATED", "ERROR")]
    if unfinished or not searcher.state.finished or stopping.stopped():
        what, code = stopping.stop_reason()
        raise SweepStopped(
            f"[sweep] stopped ({what}) after {len(searcher.state.done)} finished trials; "
            f"they are kept, and unfinished ones continue from their last epoch checkpoint: "
            f"{RESUME_HINT}",
            code,
        )
    errors = error_texts(trials)
    n_done = len(searcher.state.done)
    print(
        f"[sweep] finished {n_done} trials in {(time.time() - t0) / 60:.1f} min"
        + (f"; {failures.summary(errors)} (see their error.txt)" if errors else ""),
        flush=True,
    )
    if errors and all(d.failed for d in searcher.state.done):
        raise failures.AllTrialsFailed(
            f"every trial failed, most often with: {failures.most_common_cause(errors)[0]}; "
            f"see error.txt in the trial folders of {exp_dir}"
        )
    return exp_dir


_held: list[owner.ExperimentLock] = []  # experiment locks, held until the process exits


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


def adaptive_lines(cfg: SweepConfig) -> list[str]:
    """What the dry run says about the adaptive part (its trials are chosen as it runs)."""
    a, o = cfg.adaptive, cfg.optuna
    sizes = cfg.search_batch_sizes
    more = (
        f"; while undecided with every batch size located it doubles the largest, up to "
        f"{a.batch_sizes_max}"
        if a.batch_sizes_max and a.batch_sizes_max >= 2 * max(sizes)
        else ""
    )
    out = [
        f"then the design loop (design: adaptive) over batch sizes {sizes}{more}: after every "
        "trial it refits the model of all finished trials and places the next one where it "
        "narrows alpha's interval most (Optuna asks every trial: TPE in the model's range, "
        f"or the model's lr through enqueue_trial); a batch size starts over linear-rule lr x "
        f"10^[-{o.lr_range_decades:g}, +{o.lr_range_decades:g}] until a neighbour is located; "
        f"warmup in {space.warmup_choices(cfg)}; every trial its own seed",
        f"it stops when the verdict is decided (99% intervals, calibrated by "
        f"{a.replicates} simulated sweeps), or {budget_text(cfg)}, whichever comes first",
    ]
    if a.pin_trials:
        out.append(
            f"once decided, {a.pin_trials} pin trials per batch size near its optimum "
            "(adaptive.pin_trials; each placed after a refit), for the per-batch table's best "
            "lr: the verdict does not use them"
        )
    if cfg.measure_noise_scale and not cfg.trainable:
        out.append(
            "then one trial per batch size at its modelled best lr measures the gradient "
            "noise scale (the other trials skip it)"
        )
    out.append(
        "a decided stop is then looked at again on every finished trial; when it no longer "
        "holds, the loop goes on, its budget permitting"
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
    gpu_by_batch = {b: space.gpu_fraction(cfg, b, gpus > 0) for b in cfg.all_batch_sizes}
    for i, t in enumerate(space.grid_trials(cfg), 1):
        res = space.trial_resources(cfg.resources.cpu_per_trial, gpu_by_batch, t)
        lines.append(
            f"{i:>4}  {t['phase']:<6} {t['batch_size']:>10} {t['lr']:>10.4g} "
            f"{t['warmup_epochs']:>13g} {t['seed']:>5}  {format_resources(res)}"
        )
    counts = planned_counts(cfg)
    o, c = cfg.optuna, cfg.confirm
    lines.append("")
    if cfg.design == "adaptive":
        lines += adaptive_lines(cfg)
        return "\n".join(lines)
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
    lines.append(
        f"total: {planned_text(cfg)}; about {math.ceil(total / slots)} rounds of {slots} for "
        "the planned ones"
    )
    return "\n".join(lines)
