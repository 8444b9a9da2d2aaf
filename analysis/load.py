"""Read a Ray Tune results folder into tidy pandas tables.

A trial folder is any folder that holds a `params.json` (the trial config, a flat JSON object);
its `result.json` holds one JSON object per line, one line per reported epoch. The folder given
may hold one experiment or several (searched recursively). Nothing else is opened: Ray's own
state files (`experiment_state-*.json`, `tuner.pkl`, searcher pickles) are counted and ignored,
and nothing is ever unpickled, so folders copied from someone else are safe to read.

A folder from someone else may be hostile, so the two files are opened only as regular files
inside the folder (a link may point elsewhere inside it, never out of it; FIFOs and devices are
refused without blocking), up to a size cap, and parsed as JSON that may not nest deeply. A
trial whose files break these rules, or whose values make no sense (a batch size or lr that is
not a positive number, `true` as an lr, a metric that is text other than NaN/Infinity, a
`diverged` flag that is not true/false), is skipped and named in `LoadSummary.skipped`; the
other trials are analysed.

Tolerated, counted and reported in `LoadSummary`: trials with no result lines yet, a truncated
last line (a crash mid-write), unreadable lines, unknown extra keys, unreadable `params.json`.

    from analysis.load import load_results
    res = load_results("results/default")
    res.epochs    # one row per (trial, epoch)
    res.trials    # one row per trial: config, status, final metrics
    res.summary   # counts of what was found, skipped and truncated
"""

from __future__ import annotations

import json
import math
import os
import stat
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from trainables.contract import METRIC_KEYS, PARAM_KEYS, maximize

# Config keys promoted to columns (docs/design.md, "The trial contract"); other params.json
# keys are ignored.
CONFIG_COLUMNS: tuple[str, ...] = (
    "batch_size",
    "lr",  # peak learning rate, per step
    "warmup_epochs",
    "seed",
    "epochs",  # budget in epochs, identical for every batch size
    "phase",
    "optimizer",
    "dataset",
    "model",
    "momentum",
    "weight_decay",
    "target_metric",  # steps-to-target: the metric and value trials had to reach ("" = none)
    "target_value",
    "measure_noise_scale",  # trials reported the gradient noise scale `noise_scale`
)
assert set(CONFIG_COLUMNS) <= set(PARAM_KEYS), "a column the trial contract does not define"
CONFIG_DEFAULTS: dict[str, Any] = {"warmup_epochs": 0.0, "seed": 0, "phase": "unknown"}
# Ray's housekeeping keys in result.json that say nothing about training.
RAY_NOISE_KEYS = frozenset(
    {
        "config",
        "date",
        "hostname",
        "node_ip",
        "pid",
        "timestamp",
        "time_since_restore",
        "iterations_since_restore",
        "checkpoint_dir_name",
        "should_checkpoint",
        "experiment_tag",
        "done",
    }
)
REPORT_MARKERS = frozenset({"report.md", "report.html"})
MAX_PARAMS_BYTES = 1 << 20  # a trial config is a few KiB
MAX_RESULT_BYTES = 256 << 20  # ~1 KiB per epoch: hundreds of thousands of epochs
MAX_BATCH_SIZE = 2**31
# contract metrics that are numbers: text in them must be a number (JSON's NaN/Infinity as text)
NUMERIC_METRICS = frozenset(METRIC_KEYS) - {"diverged"}
NON_FINITE_TEXT = {"nan": math.nan, "infinity": math.inf, "inf": math.inf}


class AnalysisError(Exception):
    """A problem with the input that the user must fix; the CLI prints it as one line."""


def error_exit(exc: AnalysisError | OSError) -> int:
    """The CLIs' answer to bad input or an unwritable output: one line on stderr, code 2."""
    if isinstance(exc, AnalysisError):
        print(f"error: {exc}", file=sys.stderr)
    else:
        print(f"error: cannot write the report: {exc.strerror}: {exc.filename}", file=sys.stderr)
    return 2


@dataclass(frozen=True)
class LoadSummary:
    """What `load_results` found, kept and skipped (all of it goes into the report)."""

    root: str
    n_trials: int  # trial folders read (params.json parsed)
    n_done: int  # ran their full epoch budget
    n_diverged: int  # stopped early with diverged == true
    n_partial: int  # some epochs, not finished (still running, or killed)
    n_empty: int  # no result line yet
    n_truncated: int  # trials whose last result line was cut mid-write (line dropped)
    n_bad_lines: int  # unreadable result lines that were not the last one (dropped)
    n_unreadable: int  # trial folders skipped: params.json unreadable or lacks batch_size/lr
    n_experiments: int  # distinct parent folders of trial folders
    n_ignored_files: int  # files outside trial folders (Ray state, pickles): never opened
    epoch_budgets: tuple[int, ...]  # distinct `epochs` of the trials
    skipped: tuple[str, ...] = field(default_factory=tuple)  # "folder: reason"

    @property
    def n_finished(self) -> int:
        return self.n_done + self.n_diverged

    def lines(self) -> list[str]:
        """Human-readable account, one fact per line."""
        out = [
            f"{self.n_trials} trials in {self.n_experiments} experiment folder(s) under "
            f"{self.root}: {self.n_done} done, {self.n_diverged} diverged, "
            f"{self.n_partial} unfinished, {self.n_empty} with no results yet",
        ]
        if self.n_truncated:
            out.append(
                f"{self.n_truncated} trial(s) had a truncated last result line (crash "
                "mid-write); the line was dropped and the trial kept with its earlier epochs"
            )
        if self.n_bad_lines:
            out.append(f"{self.n_bad_lines} unreadable result line(s) inside files were dropped")
        if self.n_unreadable:
            out.append(f"{self.n_unreadable} trial folder(s) skipped: " + "; ".join(self.skipped))
        if self.n_ignored_files:
            out.append(
                f"{self.n_ignored_files} other file(s) (Ray's experiment state, pickles) "
                "ignored, never opened"
            )
        if len(self.epoch_budgets) > 1:
            out.append(
                f"WARNING: trials have different epoch budgets {list(self.epoch_budgets)}; "
                "final metrics are compared across budgets"
            )
        return out


@dataclass(frozen=True)
class Results:
    """Tidy tables of one results folder."""

    epochs: pd.DataFrame  # one row per (trial, epoch): config columns + every scalar metric
    trials: pd.DataFrame  # one row per trial: config, status, n_epochs, final metric values
    summary: LoadSummary


def find_trial_dirs(root: Path) -> tuple[list[Path], int]:
    """Trial folders (holding params.json) under root, and the number of other files seen.

    A trial folder is not searched further (its checkpoints hold no trials), nor is a report
    folder written by `analysis.fit_rule` (default `<results>/report`)."""
    trial_dirs: list[Path] = []
    n_other = 0
    for dirpath, dirnames, filenames in os.walk(root):
        if "params.json" in filenames:
            trial_dirs.append(Path(dirpath))
            dirnames.clear()
        elif REPORT_MARKERS <= set(filenames):  # a report of ours written inside the folder
            dirnames.clear()
        else:
            n_other += len(filenames)
    return sorted(trial_dirs), n_other


def read_text(path: Path, root: Path, cap: int) -> str | None:
    """The text of `path` if it is a regular file inside `root` (following a link only when it
    stays inside), at most `cap` bytes; None when it does not exist. Raises ValueError naming
    what is wrong otherwise. A FIFO or a device is refused without being read (or blocking)."""
    try:
        if path.is_symlink() and not path.resolve().is_relative_to(root.resolve()):
            raise ValueError(f"{path.name} is a link out of the results folder")
        fd = os.open(path.resolve(), os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ValueError(f"{path.name} unreadable ({exc.strerror})") from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise ValueError(f"{path.name} is not a regular file")
        if st.st_size > cap:
            raise ValueError(f"{path.name} holds {st.st_size:,} bytes, over the {cap:,} limit")
        data = f.read(cap + 1)
    if len(data) > cap:
        raise ValueError(f"{path.name} holds over {cap:,} bytes, the limit")
    return data.decode("utf-8", errors="replace")


def _json(text: str) -> Any:
    """json.loads, with nesting too deep for Python and integers too long for it as ValueError."""
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("nested too deeply") from None


def _positive_int(value: Any) -> int | None:
    """A whole number >= 1 (and sane), given as a number or as text; else None. No booleans."""
    number = _number(value, None)
    if number is None or not (1 <= number <= MAX_BATCH_SIZE) or number != int(number):
        return None
    return int(number)


def _positive_float(value: Any) -> float | None:
    """A finite number > 0, given as a number or as text; else None. No booleans."""
    number = _number(value, None)
    return number if number is not None and number > 0 else None


def read_params(path: Path, root: Path | None = None) -> dict[str, Any]:
    """The trial config of params.json; raises ValueError with the reason when unusable."""
    try:
        text = read_text(path, root or path.parent, MAX_PARAMS_BYTES)
        if text is None:
            raise ValueError("params.json is gone")
        params = _json(text)
    except ValueError as exc:
        if str(exc).startswith("params.json"):
            raise
        raise ValueError(f"unreadable params.json ({exc})") from exc
    if not isinstance(params, dict):
        raise ValueError("params.json is not a JSON object")
    for key in ("batch_size", "lr"):
        if key not in params:
            raise ValueError(f"params.json lacks '{key}'")
    batch, lr = _positive_int(params["batch_size"]), _positive_float(params["lr"])
    if batch is None:
        raise ValueError(f"batch_size {params['batch_size']!r:.40} is not a positive whole number")
    if lr is None:
        raise ValueError(f"lr {params['lr']!r:.40} is not a positive number")
    return {**params, "batch_size": batch, "lr": lr}


def read_result_lines(
    path: Path, root: Path | None = None
) -> tuple[list[dict[str, Any]], int, bool]:
    """Parsed lines of a result.json: (rows, n_bad_inner_lines, last_line_truncated).

    JSON's NaN/Infinity tokens are accepted (Ray writes them for diverged losses). Raises
    ValueError when the file may not be read (see `read_text`)."""
    text = read_text(path, root or path.parent, MAX_RESULT_BYTES)
    if text is None:
        return [], 0, False
    lines = [line for line in text.split("\n") if line.strip()]
    rows: list[dict[str, Any]] = []
    n_bad, truncated = 0, False
    for i, line in enumerate(lines):
        try:
            obj = _json(line)
        except ValueError:  # JSONDecodeError, too deep, a number too long
            obj = None
        if not isinstance(obj, dict):
            if i == len(lines) - 1:
                truncated = True
            else:
                n_bad += 1
            continue
        rows.append(obj)
    return rows, n_bad, truncated


def _metric_value(key: str, value: Any) -> Any:
    """A result value as the tables hold it: numbers as floats or ints, JSON's non-finite
    tokens written as text ("NaN") as floats. ValueError for text in a contract metric."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 2**63:
        return math.inf if value > 0 else -math.inf  # beyond any sane metric, and int64
    if not isinstance(value, str):
        return value
    word = value.strip().lower().lstrip("+")
    if word.lstrip("-") in NON_FINITE_TEXT:
        number = NON_FINITE_TEXT[word.lstrip("-")]
        return -number if word.startswith("-") else number
    if key in NUMERIC_METRICS:
        try:
            return float(value)
        except ValueError:
            raise ValueError(f"{key} is {value!r:.40}, not a number") from None
    return value


def _diverged(value: Any) -> bool:
    """The `diverged` flag: true/false as JSON, as text or as 0/1; ValueError otherwise."""
    if value is None or isinstance(value, bool):
        return bool(value)
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise ValueError(f"diverged is {value!r:.40}, not true or false")


def _scalar_metrics(row: dict[str, Any]) -> dict[str, Any]:
    return {
        k: (math.nan if v is None else _metric_value(k, v))
        for k, v in row.items()
        if k not in RAY_NOISE_KEYS and (v is None or isinstance(v, int | float | bool | str))
    }


def _epoch_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per epoch, the last occurrence winning (a resumed trial may repeat epochs).
    ValueError (naming the line) for a value that makes the trial unusable."""
    by_epoch: dict[int, dict[str, Any]] = {}
    for i, row in enumerate(rows):
        try:
            metrics = _scalar_metrics(row)
            metrics["diverged"] = _diverged(metrics.get("diverged", False))
        except ValueError as exc:
            raise ValueError(f"result.json line {i + 1}: {exc}") from None
        epoch = _positive_int(metrics.get("epoch", metrics.get("training_iteration", i + 1)))
        metrics["epoch"] = i + 1 if epoch is None else epoch
        by_epoch[metrics["epoch"]] = metrics
    return [by_epoch[e] for e in sorted(by_epoch)]


def _number(value: Any, default: float | None) -> float | None:
    """A finite number (not a boolean), else `default`."""
    if isinstance(value, bool):
        return default
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return default
    return number if math.isfinite(number) else default


def _config(params: dict[str, Any]) -> dict[str, Any]:
    """The config columns of a trial; odd values fall back to defaults instead of failing."""
    cfg = {key: params.get(key, CONFIG_DEFAULTS.get(key)) for key in CONFIG_COLUMNS}
    cfg["batch_size"] = int(cfg["batch_size"])
    cfg["lr"] = float(cfg["lr"])
    cfg["warmup_epochs"] = _number(cfg["warmup_epochs"], 0.0)
    seed = _number(cfg["seed"], 0.0)
    cfg["seed"] = int(seed) if abs(seed) < 2**63 else 0
    epochs = _positive_int(cfg["epochs"])
    cfg["epochs"] = None if epochs is None else epochs
    cfg["phase"] = str(cfg["phase"])
    return cfg


def _status(epoch_rows: list[dict[str, Any]], budget: int | None) -> str:
    if not epoch_rows:
        return "empty"
    last = epoch_rows[-1]
    if last["diverged"]:
        return "diverged"
    if budget is not None and last["epoch"] >= budget:
        return "done"
    return "partial"


def load_results(root: str | Path) -> Results:
    """Read every trial folder under root. Raises AnalysisError when there is nothing to read."""
    root = Path(root)
    if not root.exists():
        raise AnalysisError(f"results folder {root} does not exist")
    if not root.is_dir():
        raise AnalysisError(f"{root} is not a folder; pass the folder Ray Tune wrote")
    try:
        trial_dirs, n_other = find_trial_dirs(root)
    except OSError as exc:
        raise AnalysisError(f"cannot read results folder {root}: {exc.strerror}") from exc
    if not trial_dirs:
        raise AnalysisError(
            f"no trial folders (folders holding params.json) under {root}; is this the "
            "folder Ray Tune wrote (<storage>/<name>)?"
        )

    trial_rows: list[dict[str, Any]] = []
    epoch_rows: list[dict[str, Any]] = []
    skipped: list[str] = []
    n_truncated = n_bad = 0
    experiments: set[str] = set()
    for tdir in trial_dirs:
        name = tdir.relative_to(root).as_posix()
        try:
            params = read_params(tdir / "params.json", root)
            rows, bad, truncated = read_result_lines(tdir / "result.json", root)
            erows = _epoch_rows(rows)
        except ValueError as exc:
            skipped.append(f"{name}: {exc}")
            continue
        n_bad += bad
        n_truncated += truncated
        experiments.add(tdir.parent.relative_to(root).as_posix())
        cfg = _config(params)
        trial_rows.append(
            {
                "trial": name,
                "experiment": tdir.parent.name,
                **cfg,
                "truncated": truncated,
                "_erows": erows,
            }
        )
        for er in erows:
            epoch_rows.append({**er, "trial": name, **cfg})

    if not trial_rows:
        raise AnalysisError(
            f"none of the {len(trial_dirs)} trial folders under {root} could be read: "
            + skipped[0]
        )
    trials = _trial_table(trial_rows)
    epochs = _epoch_table(epoch_rows)
    counts = trials["status"].value_counts()
    budgets = sorted({int(b) for b in trials["epochs"].dropna()})
    summary = LoadSummary(
        root=str(root),
        n_trials=len(trials),
        n_done=int(counts.get("done", 0)),
        n_diverged=int(counts.get("diverged", 0)),
        n_partial=int(counts.get("partial", 0)),
        n_empty=int(counts.get("empty", 0)),
        n_truncated=n_truncated,
        n_bad_lines=n_bad,
        n_unreadable=len(trial_dirs) - len(trial_rows),
        n_experiments=len(experiments),
        n_ignored_files=n_other,
        epoch_budgets=tuple(budgets),
        skipped=tuple(skipped),
    )
    return Results(epochs=epochs, trials=trials, summary=summary)


def _fill_budgets(trial_rows: list[dict[str, Any]]) -> None:
    """A trial without `epochs` gets the largest epoch reached in its experiment."""
    reached: dict[str, int] = {}
    for t in trial_rows:
        if t["_erows"]:
            last = t["_erows"][-1]["epoch"]
            reached[t["experiment"]] = max(reached.get(t["experiment"], 0), last)
    for t in trial_rows:
        if t["epochs"] is None:
            t["epochs"] = reached.get(t["experiment"])


def _trial_table(trial_rows: list[dict[str, Any]]) -> pd.DataFrame:
    _fill_budgets(trial_rows)
    records = []
    for t in trial_rows:
        erows = t.pop("_erows")
        budget = None if t["epochs"] is None else int(t["epochs"])
        last = erows[-1] if erows else {}
        final = {k: v for k, v in last.items() if k not in t and k not in ("epoch", "diverged")}
        records.append(
            {
                **final,
                **t,
                "status": _status(erows, budget),
                "n_epochs": len(erows),
                "last_epoch": last.get("epoch", 0),
            }
        )
    trials = pd.DataFrame.from_records(records)
    trials["epochs"] = pd.to_numeric(trials["epochs"], errors="coerce")
    first = ["trial", "experiment", *CONFIG_COLUMNS, "status", "n_epochs", "last_epoch"]
    return trials[first + [c for c in trials.columns if c not in first]]


def _epoch_table(epoch_rows: list[dict[str, Any]]) -> pd.DataFrame:
    if not epoch_rows:
        return pd.DataFrame(columns=["trial", *CONFIG_COLUMNS, "epoch", "diverged"])
    epochs = pd.DataFrame.from_records(epoch_rows)
    first = ["trial", *CONFIG_COLUMNS, "epoch", "diverged"]
    return epochs[first + [c for c in epochs.columns if c not in first]]


def finished_trials(trials: pd.DataFrame) -> pd.DataFrame:
    """Trials that ran their full budget or diverged: the only ones the analysis compares."""
    return trials[trials["status"].isin(("done", "diverged"))]


NOT_REACHED_METRICS = frozenset({"steps_to_target"})  # nan = target never reached (not diverged)


def maximize_metric(metric: str) -> bool:
    """Accuracies are maximised, everything else (losses, errors, steps) minimised."""
    return maximize(metric)


def add_feasible(trials: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Finished trials with a `feasible` column: done (or, for steps to a target, reached it)
    with a finite final metric, which is made numeric."""
    fin = finished_trials(trials).copy()
    values = pd.to_numeric(fin[metric], errors="coerce").astype(float)
    finite = np.isfinite(values.to_numpy())
    fin["feasible"] = (
        finite if metric in NOT_REACHED_METRICS else ((fin["status"] == "done") & finite)
    )
    fin[metric] = values
    return fin
