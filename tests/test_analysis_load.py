"""analysis.load: Ray Tune results folders -> tidy tables, oddities tolerated and counted.

Results folders are written by analysis.synthetic in the layout Ray Tune 2.60 writes."""

import json
import math
import pickle
from pathlib import Path

import pytest

from analysis.load import AnalysisError, load_results
from analysis.synthetic import Law, SweepSpec, add_oddities, write_results, write_trial

SMALL = SweepSpec(batch_sizes=(8, 16), lr_offsets=(-0.5, 0.0, 0.5), seeds=2, grid=False)
CONTRACT_METRICS = {
    "epoch",
    "examples_seen",
    "step",
    "train_loss",
    "val_loss",
    "val_acc",
    "lr_now",
    "diverged",
    "timesteps_total",
}


class _Trap:
    """Unpickling this creates a file: proof that a pickle was (not) loaded."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


def test_one_row_per_trial_epoch_and_one_per_trial(tmp_path):
    write_results(tmp_path, Law("linear"), SMALL)
    res = load_results(tmp_path)
    assert len(res.trials) == 2 * 3 * 2
    assert CONTRACT_METRICS | {"trial", "batch_size", "lr", "warmup_epochs", "seed"} <= set(
        res.epochs.columns
    )
    per_trial = res.epochs.groupby("trial").size()
    assert (per_trial == res.trials.set_index("trial")["n_epochs"]).all()
    assert (res.trials["status"] == "done").all()
    assert (res.trials["n_epochs"] == 5).all()
    # Ray's housekeeping keys and the nested config are not metrics
    assert not {"hostname", "config", "pid", "date"} & set(res.epochs.columns)
    assert res.summary.n_done == 12 and res.summary.n_experiments == 1
    assert res.summary.n_ignored_files >= 4  # Ray's state files, never opened


def test_diverged_trials_with_nan_and_infinity_tokens(tmp_path):
    spec = SweepSpec(
        batch_sizes=(8,), lr_offsets=(0.0, 1.0), center_lr0=0.01, jitter=0.0, seeds=4, grid=False
    )
    write_results(tmp_path, Law("linear", lr0=0.01), spec)
    raw = "".join(p.read_text() for p in tmp_path.rglob("result.json"))
    assert "NaN" in raw and "Infinity" in raw  # the bare tokens Ray writes
    res = load_results(tmp_path)
    div = res.trials[res.trials["status"] == "diverged"]
    assert len(div) == 4 and (div["lr"] > 0.05).all()
    assert all(not math.isfinite(v) for v in div["val_loss"])
    assert res.summary.n_diverged == 4 and res.summary.n_done == 4


def test_oddities_are_tolerated_counted_and_mentioned(tmp_path):
    exp = write_results(tmp_path, Law("linear"), SMALL)
    expected = add_oddities(exp)
    res = load_results(tmp_path)
    s = res.summary
    assert s.n_truncated == expected["n_truncated"]
    assert s.n_empty == expected["n_empty"]
    assert s.n_partial == expected["n_partial"]
    assert s.n_unreadable == expected["n_unreadable"]
    assert "params.json" in s.skipped[0]
    text = "\n".join(s.lines())
    assert "truncated" in text and "skipped" in text and "no results yet" in text
    extra = res.trials[res.trials["seed"] == 904]
    assert extra["status"].tolist() == ["done"]
    assert "grad_norm" in res.epochs.columns  # unknown numeric metrics are kept


def test_truncated_last_line_keeps_earlier_epochs(tmp_path):
    cfg = {"batch_size": 8, "lr": 0.01, "epochs": 3, "seed": 0}
    lines = [{"epoch": e, "val_loss": 1.0 / e, "diverged": False} for e in (1, 2, 3)]
    tdir = write_trial(tmp_path / "exp", 0, cfg, lines)
    text = (tdir / "result.json").read_text()
    (tdir / "result.json").write_text(text[: len(text) - 10])
    res = load_results(tmp_path)
    assert res.summary.n_truncated == 1
    assert res.trials["last_epoch"].tolist() == [2]
    assert res.trials["status"].tolist() == ["partial"]


def test_repeated_epochs_after_a_resume_keep_the_last_report(tmp_path):
    cfg = {"batch_size": 8, "lr": 0.01, "epochs": 3, "seed": 0}
    lines = [
        {"epoch": e, "val_loss": v, "diverged": False}
        for e, v in ((1, 0.9), (2, 0.8), (2, 0.7), (3, 0.6))
    ]
    write_trial(tmp_path / "exp", 0, cfg, lines)
    res = load_results(tmp_path)
    assert res.epochs["epoch"].tolist() == [1, 2, 3]
    assert res.epochs["val_loss"].tolist() == [0.9, 0.7, 0.6]
    assert res.trials["status"].tolist() == ["done"]


def test_trial_without_epochs_key_uses_the_experiment_budget(tmp_path):
    for i, n in enumerate((4, 2)):
        cfg = {"batch_size": 8, "lr": 0.01 * (i + 1)}  # no "epochs", no "seed"
        write_trial(
            tmp_path / "exp", i, cfg, [{"epoch": e, "val_loss": 1.0} for e in range(1, n + 1)]
        )
    res = load_results(tmp_path)
    assert sorted(res.trials["status"]) == ["done", "partial"]


def test_several_experiments_are_found_recursively(tmp_path):
    write_results(tmp_path / "cluster" / "a", Law("linear"), SMALL, name="exp1")
    write_results(tmp_path / "cluster" / "b", Law("sqrt"), SMALL, name="exp2")
    res = load_results(tmp_path)
    assert res.summary.n_experiments == 2
    assert len(res.trials) == 24


def test_nothing_in_the_folder_is_ever_unpickled(tmp_path):
    exp = write_results(tmp_path, Law("linear"), SMALL)
    sentinel = tmp_path / "unpickled"
    trap = pickle.dumps(_Trap(sentinel))
    probe = tmp_path / "probe"
    pickle.loads(pickle.dumps(_Trap(probe)))  # the trap works ...
    assert probe.exists()
    for path in [exp / "tuner.pkl", exp / "searcher-state-x.pkl", *exp.glob("*/params.pkl")]:
        path.write_bytes(trap)
    load_results(tmp_path)
    assert not sentinel.exists()  # ... and the loader never springs it


def test_an_earlier_report_inside_the_results_is_not_read(tmp_path):
    write_results(tmp_path, Law("linear"), SMALL)
    before = load_results(tmp_path).summary
    report = tmp_path / "report"
    (report / "figures").mkdir(parents=True)
    for name in ("report.md", "report.html", "fit.json", "figures/a.png"):
        (report / name).write_text("{}")
    after = load_results(tmp_path).summary
    assert after.n_ignored_files == before.n_ignored_files
    assert after.n_trials == before.n_trials


@pytest.mark.parametrize(
    "setup, message",
    [
        (lambda p: p / "missing", "does not exist"),
        (lambda p: p, "no trial folders"),
        (lambda p: (p / "f.txt").write_text("x") and p / "f.txt", "not a folder"),
    ],
)
def test_unusable_folders_raise_one_clear_error(tmp_path, setup, message):
    with pytest.raises(AnalysisError, match=message):
        load_results(setup(tmp_path))


def test_a_folder_of_only_broken_trials_raises(tmp_path):
    tdir = tmp_path / "exp" / "trial_0"
    tdir.mkdir(parents=True)
    (tdir / "params.json").write_text(json.dumps({"lr": 0.1}))
    with pytest.raises(AnalysisError, match="lacks 'batch_size'"):
        load_results(tmp_path)
