"""The phased searcher driven through Ray's Searcher interface by hand (real Optuna studies in a
real journal file; no Ray needed to decide what to suggest next)."""

import math

import optuna
from conftest import SMOKE
from ray.tune.search import ConcurrencyLimiter

from sweep.config import load_config
from sweep.decide import Done
from sweep.progress import progress_line
from sweep.runner import build_plan
from sweep.search import PhasedSearcher, Searcher, SweepSearch


def drive(searcher: PhasedSearcher, value_of) -> list[dict]:
    """Run every suggestion to completion one at a time, as Ray would with one slot."""
    seen, i = [], 0
    while True:
        cfg = searcher.suggest(f"t{i}")
        if cfg == Searcher.FINISHED:
            return seen
        assert cfg is not None  # one slot, nothing in flight: always a suggestion or FINISHED
        value = value_of(cfg["lr"])
        result = {"val_loss": value, "diverged": math.isnan(value)}
        searcher.on_trial_complete(f"t{i}", result)
        seen.append(cfg)
        i += 1


def test_best_lr_just_below_the_divergence_edge_gets_bracketed(tmp_path):
    cfg = load_config(
        SMOKE,
        [
            "batch_sizes=[8]",
            "grid.lr_multipliers=[1]",
            "grid.warmup_epochs=[0]",
            "optuna.warmup_epochs=[0]",
            "optuna.trials_per_batch_size=6",
            "optuna.max_widenings=0",
            "confirm.top_k=1",
            "confirm.seeds=2",
        ],
    )
    searcher = PhasedSearcher(build_plan(cfg, tmp_path), max_concurrent=1)
    edge = 0.3  # loss falls with lr up to the divergence edge
    runs = drive(searcher, lambda lr: math.nan if lr > edge else 1.0 - math.log10(lr) / 10)
    phases = [r["phase"] for r in runs]
    assert phases.count("grid") == 1 and phases.count("confirm") == 2
    optuna_lrs = [r["lr"] for r in runs if r["phase"] == "optuna"]
    assert 7 <= len(optuna_lrs) <= 8  # 6 + one or two bracketing trials
    assert "to bracket it" in " ".join(searcher.state.notes)
    study = optuna.load_study(
        study_name=searcher.plan.studies[8].name, storage=searcher.studies.storage
    )
    bracket = [t for t in study.trials if t.user_attrs.get("bracket")]
    assert bracket and all(t.state == optuna.trial.TrialState.COMPLETE for t in bracket)
    # the confirmation re-runs the best feasible lr with new seeds
    feasible = [r["lr"] for r in runs if r["phase"] != "confirm" and r["lr"] <= edge]
    confirm = [r for r in runs if r["phase"] == "confirm"]
    assert {r["lr"] for r in confirm} == {max(feasible)}
    assert sorted(r["seed"] for r in confirm) == [1, 2]


def test_nothing_of_the_searcher_is_pickled_into_the_experiment_folder(tmp_path):
    # its state is rebuilt from the trial folders and the journal (tests/test_resume.py), so
    # Ray's snapshots of it, which a resume would unpickle, are never written
    cfg = load_config(SMOKE, ["batch_sizes=[8]", "optuna.trials_per_batch_size=3"])
    searcher = PhasedSearcher(build_plan(cfg, tmp_path), max_concurrent=2)
    search = SweepSearch(ConcurrencyLimiter(searcher, max_concurrent=2))
    searcher.suggest("x0")
    searcher.on_trial_complete("x0", {"val_loss": 0.5, "diverged": False})
    search.save_to_dir(str(tmp_path), session_str="now")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["optuna-journal.log"]
    assert not search.has_checkpoint(str(tmp_path))


def test_widened_studies_of_a_sweep_named_with_dash_w_stay_apart(tmp_path):
    # the old code cut a study's name at its first "-w" to name the widened one, so in a sweep
    # named "lr-warmup" every batch size's widened study was "lr-w1": one merged study
    cfg = load_config(
        SMOKE,
        [
            "name=lr-warmup",
            "batch_sizes=[8,32]",
            "grid.lr_multipliers=[1]",
            "grid.warmup_epochs=[0]",
            "optuna.warmup_epochs=[0]",
            "optuna.trials_per_batch_size=4",
            "optuna.lr_range_decades=0.5",
            "optuna.max_widenings=1",
        ],
    )
    searcher = PhasedSearcher(build_plan(cfg, tmp_path), max_concurrent=1)
    drive(searcher, lambda lr: 1.0 - math.log10(lr) / 10)  # the larger the lr, the better
    names = set(optuna.get_all_study_names(searcher.studies.storage))
    widened = {n for n in names if n.endswith("-w1")}
    assert len(names) == 4 and len(widened) == 2, names
    for b in (8, 32):
        (name,) = [n for n in widened if n.startswith("lr-warmup-") and f"-B{b}-" in n]
        trials = optuna.load_study(study_name=name, storage=searcher.studies.storage).trials
        assert {t.user_attrs["phase"] for t in trials} == {"grid", "optuna"}
    assert sum("widened to" in note for note in searcher.state.notes) == 2


def test_the_progress_line_counts_the_phases_and_names_the_trial():
    counts, totals = (
        {"grid": 14, "optuna": 1, "confirm": 0},
        {"grid": 14, "optuna": 56, "confirm": 28},
    )
    trial = Done("optuna", 8, 0.000758, 0.0, 0, 0.3723, False)
    assert progress_line(trial, counts, totals, "val_loss", 9.1, 114) == (
        "[sweep 15/98] grid 14/14 | optuna 1/56 | confirm 0/28 | optuna B=8 lr=0.000758 "
        "warmup=0 seed=0: val_loss 0.3723 (9.1 s; 1.9 min elapsed)"
    )
    grid_only = {"grid": 12, "optuna": 0, "confirm": 0}
    failed = Done("grid", 32, 0.4, 1.0, 0, math.nan, False, failed=True)
    assert progress_line(failed, grid_only, grid_only, "val_loss", math.nan, 60).startswith(
        "[sweep 12/12] grid 12/12 | grid B=32 lr=0.4 warmup=1 seed=0: FAILED (nan s;"
    )
    diverged = Done("grid", 32, 0.4, 1.0, 0, math.nan, True)
    assert ": diverged (" in progress_line(diverged, grid_only, grid_only, "val_loss", 1, 60)
