"""The searcher's decisions as pure functions: no Optuna, no Ray, answers worked out by hand."""

import math

import pytest
from conftest import heavy_imports

from sweep.decide import (
    MAX_BRACKETS,
    Done,
    StudyState,
    bracket,
    confirm_picks,
    next_study,
    outcome,
    penalty,
    ranked,
    widening,
)


def done(
    lr: float,
    value: float,
    phase: str = "optuna",
    batch_size: int = 8,
    warmup: float = 0.0,
    failed: bool = False,
) -> Done:
    return Done(phase, batch_size, lr, warmup, 0, value, math.isnan(value) and not failed, failed)


def study(lo: float = -3.0, hi: float = 1.0, budget: int = 8, asked: int = 8, **kw) -> StudyState:
    return StudyState(8, lo, hi, budget, 0, "sweep-run-B8", asked=asked, **kw)


def test_deciding_imports_neither_optuna_nor_ray():
    assert heavy_imports("import sweep.decide") == []


def test_an_outcome_is_the_metric_or_nan_when_diverged_or_failed():
    cfg = {"batch_size": 8, "lr": 0.1, "warmup_epochs": 1.0, "seed": 2}
    ok = outcome("t1", "grid", cfg, {"val_loss": 0.3, "diverged": False}, "val_loss", False)
    assert (ok.value, ok.diverged, ok.failed, ok.trial_id, ok.warmup) == (
        0.3,
        False,
        False,
        "t1",
        1.0,
    )
    div = outcome("t2", "grid", cfg, {"val_loss": 0.3, "diverged": True}, "val_loss", False)
    assert math.isnan(div.value) and div.diverged and not div.failed
    assert outcome("t3", "grid", cfg, None, "val_loss", False).failed
    assert outcome("t4", "grid", cfg, {"val_loss": 0.3}, "val_loss", True).failed
    assert math.isnan(outcome("t5", "grid", cfg, {"val_loss": math.inf}, "val_loss", False).value)


def test_ranking_keeps_the_batch_sizes_feasible_search_trials_best_first():
    trials = [
        done(0.1, 0.5),
        done(0.2, 0.3),
        done(0.4, math.nan),
        done(0.3, 0.1, "confirm"),
        done(0.05, 0.2, batch_size=16),
        done(0.01, 0.4, "grid"),
    ]
    assert [d.lr for d in ranked(trials, 8, maximize=False)] == [0.2, 0.01, 0.1]
    assert [d.lr for d in ranked(trials, 8, maximize=True)] == [0.1, 0.01, 0.2]


def test_a_diverged_trial_is_told_worse_than_anything_seen():
    trials = [done(0.1, 0.5), done(0.2, 0.3), done(0.4, math.nan)]
    assert penalty(trials, maximize=False) == pytest.approx(0.5 + 0.2)
    assert penalty(trials, maximize=True) == pytest.approx(0.3 - 0.2)
    assert penalty([done(0.1, 0.5)], maximize=False) == pytest.approx(0.501)  # spread >= 1e-3
    assert penalty([], maximize=False) == 10.0 and penalty([], maximize=True) == 0.0


def test_confirmation_picks_distinct_lr_warmup_pairs():
    trials = [done(0.2, 0.1), done(0.2, 0.2), done(0.2, 0.3, warmup=1.0), done(0.4, 0.4)]
    assert confirm_picks(trials, 2) == [(0.2, 0.0), (0.2, 1.0)]
    assert confirm_picks(trials, 5) == [(0.2, 0.0), (0.2, 1.0), (0.4, 0.0)]


def test_a_best_lr_at_the_upper_edge_widens_the_range_upwards():
    # range 1e-3 .. 10 over 8 trials: a step is 0.5 decade; 5 is within it of the top
    trials = [done(10**x, 1.0 - x / 10) for x in (-2.5, -1.0, 0.0, 0.7)]
    w = widening(study(asked=4), trials, max_widenings=2, widen_decades=1.0, maximize=False)
    assert w is not None and w.edge == "upper" and w.extra == 4
    assert w.log10_range == (-3.0, 2.0) and w.best_lr == pytest.approx(10**0.7)


def test_no_widening_inside_the_range_too_early_or_too_often():
    inside = [done(10**x, abs(x + 1)) for x in (-2.5, -1.0, 0.0)]
    assert widening(study(), inside, 2, 1.0, False) is None
    edge = [done(10**x, -x) for x in (-2.0, -1.0, 0.8)]
    assert widening(study(), edge[:2] + [done(10**0.8, -0.8, "grid")], 2, 1.0, False) is None
    assert widening(study(widenings=2), edge, 2, 1.0, False) is None
    assert widening(study(), edge, 2, 1.0, False).edge == "upper"


def test_a_best_lr_below_the_divergence_edge_is_bracketed_at_the_gap_midpoint():
    trials = [done(0.01, 0.5), done(0.1, 0.2), done(1.0, math.nan)]
    b = bracket(study(), trials, maximize=False)
    assert b is not None and b.lr == pytest.approx(math.sqrt(0.1 * 1.0))
    assert b.best.lr == 0.1
    # with no infeasible trial above, the gap ends at the range's edge (10^1)
    assert bracket(study(), trials[:2], False).lr == pytest.approx(math.sqrt(0.1 * 10.0))
    # and at the lower side when the best is the smallest lr tried
    low = [done(0.01, 0.1), done(0.1, 0.2)]
    assert bracket(study(), low, False).lr == pytest.approx(math.sqrt(0.01 * 1e-3))


def test_no_bracket_before_the_budget_is_spent_when_bracketed_or_too_often():
    trials = [done(0.01, 0.5), done(0.1, 0.2), done(1.0, math.nan)]
    assert bracket(study(asked=7), trials, False) is None
    assert bracket(study(brackets=MAX_BRACKETS), trials, False) is None
    assert bracket(study(), trials + [done(0.3, 0.4)], False) is None  # feasible both sides
    failed = [done(0.01, 0.5), done(0.1, 0.2), done(0.3, math.nan, failed=True)]
    assert bracket(study(), failed, False).lr == pytest.approx(math.sqrt(0.1 * 10.0))


def test_studies_advance_round_robin_once_their_grid_is_done():
    a, b = study(budget=4, asked=1), StudyState(16, -3, 1, 4, 1, "s-r-B16", asked=0)
    assert next_study([a, b], {}, {8, 16}) is b
    assert next_study([a, b], {16: 2}, {8, 16}) is a
    assert next_study([a, b], {}, {8}) is a  # B=16's grid trials still run
    assert next_study([study(budget=4, asked=4)], {}, {8}) is None


def test_a_widened_study_keeps_its_batch_sizes_base_name():
    st = StudyState(8, -3, 1, 8, 0, "lr-warmup-20260101-120000-B8")
    assert st.name == "lr-warmup-20260101-120000-B8"
    st.widenings = 2
    assert st.name == "lr-warmup-20260101-120000-B8-w2"
