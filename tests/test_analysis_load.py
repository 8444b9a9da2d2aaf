"""analysis.load: Ray Tune results folders -> tidy tables, oddities tolerated and counted.

Results folders are written by analysis.synthetic in the layout Ray Tune 2.60 writes."""

import json
import math
import os
import pickle
from pathlib import Path

import pytest

import analysis.load
from analysis.load import AnalysisError, load_results
from analysis.pipeline import analyze
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


# ---------------------------------------------------------------------------- hostile folders
def _one_damaged(tmp_path: Path, damage) -> tuple[Path, Path]:
    """SMALL's results with its first trial damaged; returns (root, damaged trial folder)."""
    exp = write_results(tmp_path / "results", Law("linear"), SMALL)
    first = sorted(p.parent for p in exp.glob("*/params.json"))[0]
    damage(first)
    return tmp_path / "results", first


def _skipped_only(root: Path, trial: Path, reason: str) -> None:
    res = load_results(root)
    assert len(res.trials) == 11 and res.summary.n_unreadable == 1
    (line,) = res.summary.skipped
    assert line.startswith(trial.relative_to(root).as_posix()) and reason in line, line
    assert "skipped" in "\n".join(res.summary.lines())


def _relink(target: str):
    def damage(trial: Path) -> None:
        (trial / "result.json").unlink()
        (trial / "result.json").symlink_to(target)

    return damage


@pytest.mark.parametrize("target", ["/etc/passwd", "/dev/zero"])
def test_a_result_json_linked_out_of_the_folder_is_never_opened(tmp_path, target):
    root, trial = _one_damaged(tmp_path, _relink(target))
    _skipped_only(root, trial, "result.json is a link out of the results folder")


def test_a_link_that_stays_inside_the_folder_is_followed(tmp_path):
    def damage(trial: Path) -> None:
        (trial.parent / "kept.json").write_bytes((trial / "result.json").read_bytes())
        _relink("../kept.json")(trial)

    root, _ = _one_damaged(tmp_path, damage)
    res = load_results(root)
    assert len(res.trials) == 12 and (res.trials["status"] == "done").all()


def test_a_fifo_or_an_oversized_file_is_skipped_without_blocking(tmp_path, monkeypatch):
    def fifo(trial: Path) -> None:
        (trial / "result.json").unlink()
        os.mkfifo(trial / "result.json")  # reading it would wait for a writer forever

    root, trial = _one_damaged(tmp_path / "a", fifo)
    _skipped_only(root, trial, "result.json is not a regular file")
    root, trial = _one_damaged(
        tmp_path / "b", lambda t: (t / "result.json").write_text("x" * 9999)
    )
    cap = max(p.stat().st_size for p in root.rglob("result.json") if p.parent != trial)
    monkeypatch.setattr(analysis.load, "MAX_RESULT_BYTES", cap)  # the others fit, this one not
    _skipped_only(root, trial, f"result.json holds 9,999 bytes, over the {cap:,} limit")


def _edit_rows(**values):
    def damage(trial: Path) -> None:
        rows = [json.loads(x) for x in (trial / "result.json").read_text().splitlines()]
        text = "".join(json.dumps({**r, **values}) + "\n" for r in rows)
        (trial / "result.json").write_text(text)

    return damage


def _edit_params(text: str | None = None, **values):
    def damage(trial: Path) -> None:
        params = {**json.loads((trial / "params.json").read_text()), **values}
        (trial / "params.json").write_text(text if text is not None else json.dumps(params))

    return damage


def test_nan_written_as_text_is_nan_and_the_report_still_runs(tmp_path):
    root, trial = _one_damaged(tmp_path, _edit_rows(val_loss="NaN", train_loss="-Infinity"))
    res = load_results(root)
    assert len(res.trials) == 12 and res.summary.n_unreadable == 0
    row = res.trials[res.trials["trial"] == trial.relative_to(root).as_posix()].iloc[0]
    assert math.isnan(row["val_loss"]) and row["train_loss"] == -math.inf
    assert res.epochs["val_loss"].dtype == float
    a = analyze(root, n_boot=0)  # before: "metric 'val_loss' is not in the trials' result.json"
    assert a.verdict.verdict in ("linear", "sqrt", "neither", "inconclusive")
    assert sum(a.best["n_trials"]) == 12  # the NaN trial is one of them: finished, infeasible


def test_a_metric_that_is_text_skips_the_trial_and_names_it(tmp_path):
    root, trial = _one_damaged(tmp_path, _edit_rows(val_loss="low"))
    _skipped_only(root, trial, "result.json line 1: val_loss is 'low', not a number")


@pytest.mark.parametrize(
    "flag, diverged", [("false", False), ("FALSE", False), (0, False), ("true", True), (1, True)]
)
def test_diverged_written_as_text_or_a_number_means_what_it_says(tmp_path, flag, diverged):
    root, trial = _one_damaged(tmp_path, _edit_rows(diverged=flag))
    res = load_results(root)
    row = res.trials[res.trials["trial"] == trial.relative_to(root).as_posix()].iloc[0]
    assert (row["status"] == "diverged") == diverged
    assert res.summary.n_diverged == int(diverged)


def test_a_diverged_flag_that_is_neither_true_nor_false_skips_the_trial(tmp_path):
    root, trial = _one_damaged(tmp_path, _edit_rows(diverged="maybe"))
    _skipped_only(root, trial, "diverged is 'maybe', not true or false")


@pytest.mark.parametrize(
    "damage, reason",
    [
        (_edit_params(lr=True), "lr True is not a positive number"),
        (_edit_params(batch_size=True), "batch_size True is not a positive whole number"),
        (_edit_params(batch_size=8.5), "batch_size 8.5 is not a positive whole number"),
        (_edit_params(lr=float("inf")), "lr inf is not a positive number"),
        (_edit_params('{"batch_size": 1' + "0" * 400 + ', "lr": 0.1}'), "batch_size 1000"),
        (_edit_params('{"batch_size": 8, "lr": 1' + "0" * 5000 + "}"), "unreadable params"),
        (_edit_params('{"a": ' * 100_000), "unreadable params.json (nested too deeply)"),
    ],
    ids=["lr true", "batch true", "batch 8.5", "lr inf", "batch 10^400", "lr 5000 digits", "deep"],
)
def test_a_params_json_with_values_that_make_no_sense_skips_the_trial(tmp_path, damage, reason):
    root, trial = _one_damaged(tmp_path, damage)
    _skipped_only(root, trial, reason)
    assert 1 not in set(load_results(root).trials["batch_size"])  # no phantom B = 1 row


def test_deep_or_huge_values_in_result_lines_are_dropped_or_clipped(tmp_path):
    def damage(trial: Path) -> None:
        _edit_rows(noise_scale=10**400, seed_of_the_day=-(10**400))(trial)
        lines = (trial / "result.json").read_text().splitlines()
        lines.insert(1, "[" * 100_000)  # an inner line nested too deeply for Python
        (trial / "result.json").write_text("\n".join(lines) + "\n")

    root, trial = _one_damaged(tmp_path, damage)
    res = load_results(root)
    assert len(res.trials) == 12 and res.summary.n_bad_lines == 1
    row = res.trials[res.trials["trial"] == trial.relative_to(root).as_posix()].iloc[0]
    assert row["noise_scale"] == math.inf and row["seed_of_the_day"] == -math.inf
