"""The phased searcher driven through Ray's Searcher interface by hand (real Optuna studies in a
real journal file; no Ray needed to decide what to suggest next)."""

import math

import optuna

from sweep.config import load_config
from sweep.runner import build_plan
from sweep.search import PhasedSearcher, Searcher

SMOKE = "sweep/configs/smoke.yaml"


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
    cfg = load_config(SMOKE, ["batch_sizes=[8]", "grid.lr_multipliers=[1]",
                              "grid.warmup_epochs=[0]", "optuna.warmup_epochs=[0]",
                              "optuna.trials_per_batch_size=6", "optuna.max_widenings=0",
                              "confirm.top_k=1", "confirm.seeds=2"])
    searcher = PhasedSearcher(build_plan(cfg, tmp_path), max_concurrent=1)
    edge = 0.3  # loss falls with lr up to the divergence edge
    runs = drive(searcher, lambda lr: math.nan if lr > edge else 1.0 - math.log10(lr) / 10)
    phases = [r["phase"] for r in runs]
    assert phases.count("grid") == 1 and phases.count("confirm") == 2
    optuna_lrs = [r["lr"] for r in runs if r["phase"] == "optuna"]
    assert 7 <= len(optuna_lrs) <= 8  # 6 + one or two bracketing trials
    assert "to bracket it" in " ".join(searcher.state.notes)
    study = optuna.load_study(study_name=searcher.plan.studies[8].name,
                              storage=searcher._storage())
    bracket = [t for t in study.trials if t.user_attrs.get("bracket")]
    assert bracket and all(t.state == optuna.trial.TrialState.COMPLETE for t in bracket)
    # the confirmation re-runs the best feasible lr with new seeds
    feasible = [r["lr"] for r in runs if r["phase"] != "confirm" and r["lr"] <= edge]
    confirm = [r for r in runs if r["phase"] == "confirm"]
    assert {r["lr"] for r in confirm} == {max(feasible)}
    assert sorted(r["seed"] for r in confirm) == [1, 2]


def test_state_survives_save_and_restore(tmp_path):
    cfg = load_config(SMOKE, ["batch_sizes=[8]", "optuna.trials_per_batch_size=3"])
    a = PhasedSearcher(build_plan(cfg, tmp_path), max_concurrent=2)
    first = a.suggest("x0")
    a.on_trial_complete("x0", {"val_loss": 0.5, "diverged": False})
    a.suggest("x1")
    a.save(str(tmp_path / "state.pkl"))
    b = PhasedSearcher(build_plan(cfg, tmp_path), max_concurrent=1)
    b.restore(str(tmp_path / "state.pkl"))
    assert b.state.grid_next == a.state.grid_next and set(b.state.live) == {"x1"}
    assert b.max_concurrent == 2 and len(b.state.done) == 1
    assert first["phase"] == "grid"
