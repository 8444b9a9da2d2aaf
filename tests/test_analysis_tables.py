"""The results as data: the report folder holds trials.csv/.parquet, epochs.parquet and
best_lr.csv, which say the same as the results folder and fit.json."""

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from analysis.fit_rule import main
from analysis.synthetic import Law, SweepSpec, add_oddities, write_results

SPEC = SweepSpec(batch_sizes=(8, 16, 32), lr_offsets=(-0.5, 0.0, 0.5, 1.2), seeds=2, grid=True)


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> tuple[Path, Path]:
    """(results folder, report folder) of a synthetic sweep with a diverged edge, unfinished,
    empty and unreadable trials, and node ids as the sweep reports them."""
    root = tmp_path_factory.mktemp("tables")
    exp = write_results(root / "results", Law("linear", lr0=0.01), SPEC)
    add_oddities(exp)
    for i, path in enumerate(sorted(exp.glob("*/result.json"))):
        lines = [json.loads(x) for x in path.read_text().splitlines() if x.endswith("}")]
        node = {"node_id": f"node{i % 2}"}
        path.write_text("".join(json.dumps({**row, **node}) + "\n" for row in lines))
    out = root / "report"
    assert main(["--results", str(root / "results"), "--out", str(out), "--n-boot", "0"]) == 0
    return root / "results", out


def test_the_report_folder_holds_the_four_tables(report):
    _, out = report
    for name in ("trials.csv", "trials.parquet", "epochs.parquet", "best_lr.csv"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name


def test_one_row_per_trial_with_config_phase_status_final_metrics_and_node(report):
    results, out = report
    trials = pd.read_csv(out / "trials.csv")
    readable = [p for p in results.rglob("params.json") if p.read_text().strip().endswith("}")]
    assert len(trials) == len(readable)  # every readable trial, finished or not
    assert list(trials.columns[:8]) == [
        "trial",
        "experiment",
        "phase",
        "status",
        "batch_size",
        "lr",
        "warmup_epochs",
        "seed",
    ]
    assert {"val_loss", "val_acc", "train_loss", "n_epochs", "node_id"} <= set(trials.columns)
    assert set(trials["status"]) == {"done", "diverged", "partial", "empty"}
    assert set(trials["phase"]) == {"grid", "optuna"}
    assert set(trials["node_id"].dropna()) == {"node0", "node1"}
    # a trial's row holds its last epoch's metrics, as result.json has them
    done = trials[trials["status"] == "done"].iloc[0]
    last = json.loads((results / done["trial"] / "result.json").read_text().splitlines()[-1])
    assert done["val_loss"] == pytest.approx(last["val_loss"])
    assert done["n_epochs"] == last["epoch"] == done["epochs"]
    parquet = pd.read_parquet(out / "trials.parquet")
    assert parquet["trial"].tolist() == trials["trial"].tolist()
    assert parquet["val_loss"].equals(trials["val_loss"].astype(float))
    assert parquet["batch_size"].dtype.kind == "i" and parquet["lr"].dtype.kind == "f"


def test_one_row_per_epoch_holds_the_learning_curves(report):
    _, out = report
    trials = pd.read_parquet(out / "trials.parquet")
    epochs = pd.read_parquet(out / "epochs.parquet")
    assert len(epochs) == trials["n_epochs"].sum()
    assert list(epochs.columns[:7]) == [
        "trial",
        "phase",
        "batch_size",
        "lr",
        "warmup_epochs",
        "seed",
        "epoch",
    ]
    per_trial = epochs.groupby("trial")["epoch"].max()
    assert (per_trial == trials.set_index("trial").loc[per_trial.index, "last_epoch"]).all()
    assert epochs["diverged"].dtype == bool and epochs["diverged"].any()


def test_best_lr_csv_is_fit_jsons_best_lr(report):
    _, out = report
    best = pd.read_csv(out / "best_lr.csv")
    fit = json.loads((out / "fit.json").read_text())["best_lr"]
    assert best["batch_size"].tolist() == [b["batch_size"] for b in fit] == [8, 16, 32]
    assert set(best["metric"]) == {"val_loss"}
    for row, b in zip(best.itertuples(), fit, strict=True):
        assert (row.lr, row.n_trials, row.n_diverged) == (
            pytest.approx(b["lr"]),
            b["n_trials"],
            b["n_diverged"],
        )
        lo, hi = b["lr_ci"]
        assert math.isnan(row.lr_ci_lo) if lo is None else row.lr_ci_lo == pytest.approx(lo)
        assert math.isnan(row.lr_ci_hi) if hi is None else row.lr_ci_hi == pytest.approx(hi)
        assert bool(row.at_edge) == b["at_edge"]
