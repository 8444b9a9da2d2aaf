"""The results as data: the trial table, every epoch and the best lr per batch size, as files
beside the report, for pandas, R, DuckDB or a spreadsheet.

`analysis.report.write_report` calls `write_tables(a, out_dir)`, which writes:

- `trials.csv` and `trials.parquet`: one row per trial: its folder (`trial`), `phase`,
  `status` (done | diverged | partial | empty), its config (`batch_size`, `lr` = peak lr per
  step, `warmup_epochs`, `seed`, `epochs`, `optimizer`, ...), `n_epochs` and `last_epoch`,
  the final epoch's metrics (`train_loss`, `val_loss`, `val_acc`, `noise_scale`,
  `steps_to_target`, ...) and where it ran (`node_id`, `hostname`);
- `epochs.parquet`: one row per (trial, epoch): the config columns and every metric of that
  epoch (the learning curves);
- `best_lr.csv`: one row per batch size: the best lr with its 95% interval (`lr_ci_lo`,
  `lr_ci_hi`; empty = open on that side), `at_edge`, whether the rule fits used it
  (`in_fit`), and the trial counts, as in fit.json's `best_lr`.

Values that could not be computed are empty cells in CSV and nulls in Parquet. Read them back
with `pandas.read_parquet(".../report/trials.parquet")` or `pandas.read_csv(...)`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from analysis.inference import TABLE_COLUMNS

if TYPE_CHECKING:
    from analysis.pipeline import Analysis

# the columns a reader looks for first, in this order (the rest follow as loaded)
TRIAL_FIRST = (
    "trial",
    "experiment",
    "phase",
    "status",
    "batch_size",
    "lr",
    "warmup_epochs",
    "seed",
    "epochs",
    "optimizer",
    "momentum",
    "weight_decay",
    "dataset",
    "model",
    "n_epochs",
    "last_epoch",
    "train_loss",
    "val_loss",
    "val_acc",
    "noise_scale",
    "steps_to_target",
    "examples_seen",
    "step",
    "train_time_s",
    "node_id",
    "hostname",
)
EPOCH_FIRST = ("trial", "phase", "batch_size", "lr", "warmup_epochs", "seed", "epoch")
BEST_FIRST = tuple(TABLE_COLUMNS)  # fit.json's best_lr, as the model's table orders it


def _ordered(df: pd.DataFrame, first: tuple[str, ...]) -> pd.DataFrame:
    head = [c for c in first if c in df.columns]
    return df[head + [c for c in df.columns if c not in head]]


def _typed(df: pd.DataFrame) -> pd.DataFrame:
    """One type per column, as Parquet needs: a column of mixed Python values (None beside
    floats, booleans beside None, ...) becomes numbers, booleans or text."""
    out = df.copy()
    for col in out.columns:
        if not (pd.api.types.is_object_dtype(out[col]) or pd.api.types.is_string_dtype(out[col])):
            continue
        values = out[col].dropna()
        if values.map(lambda v: isinstance(v, bool)).all() and len(values):
            out[col] = out[col].astype("boolean")
        elif values.map(lambda v: isinstance(v, int | float) and not isinstance(v, bool)).all():
            out[col] = pd.to_numeric(out[col], errors="coerce").astype(float)
        else:
            out[col] = out[col].map(lambda v: None if v is None or v != v else str(v))
            out[col] = out[col].astype("string")
    return out


def trial_table(a: Analysis) -> pd.DataFrame:
    """One row per trial (every trial read, finished or not)."""
    return _typed(_ordered(a.trials.reset_index(drop=True), TRIAL_FIRST))


def epoch_table(a: Analysis) -> pd.DataFrame:
    """One row per (trial, epoch), with the trial's phase."""
    epochs = a.epochs.reset_index(drop=True)
    if "phase" not in epochs.columns and "phase" in a.trials.columns:
        epochs = epochs.merge(a.trials[["trial", "phase"]], on="trial", how="left")
    return _typed(_ordered(epochs, EPOCH_FIRST))


def best_lr_table(a: Analysis) -> pd.DataFrame:
    """One row per batch size: the best lr, its interval and the counts (fit.json's best_lr)."""
    best = a.best.reset_index(drop=True)
    best.insert(1, "metric", a.metric)  # the metric `metric_best` and the lrs are about
    return _typed(_ordered(best, BEST_FIRST))


def write_tables(a: Analysis, out_dir: str | Path) -> dict[str, Path]:
    """Write trials.csv, trials.parquet, epochs.parquet and best_lr.csv; returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {name: out / name for name in TABLE_FILES}
    trials = trial_table(a)
    trials.to_csv(paths["trials.csv"], index=False)
    trials.to_parquet(paths["trials.parquet"], index=False)
    epoch_table(a).to_parquet(paths["epochs.parquet"], index=False)
    best_lr_table(a).to_csv(paths["best_lr.csv"], index=False)
    return paths


TABLE_FILES = ("trials.csv", "trials.parquet", "epochs.parquet", "best_lr.csv")
