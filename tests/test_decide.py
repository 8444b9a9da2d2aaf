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
    max_extra_trials,
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


def _grow(trials: int, widenings: int, brackets_first: bool) -> int:
    """Trials added to one study by the real `bracket` and `widening` rules when every chance
    is taken: a best lr with nothing feasible above it, then at the upper edge of the range."""
    st = study(lo=-3.0, hi=1.0, budget=trials, asked=trials)
    ran = [done(10 ** (-2.5 + 0.01 * i), 0.5) for i in range(trials - 1)]
    ran.append(done(10 ** (st.log10_hi - 1.0), 0.1))  # the best, well inside the range

    def bracket_all() -> None:
        while (b := bracket(st, ran, maximize=False)) is not None:
            st.brackets, st.budget, st.asked = st.brackets + 1, st.budget + 1, st.asked + 1
            ran.append(done(b.lr, math.nan))  # diverged: still nothing feasible above the best

    def widen_all() -> None:
        while True:
            ran.append(done(10 ** (st.log10_hi - 0.001), 0.05 - 0.01 * st.widenings))
            ran.extend(done(10**-2.9, 0.9) for _ in range(st.budget))  # enough run to widen
            w = widening(st, ran, widenings, 1.0, maximize=False)
            if w is None:
                return
            st.widenings, st.budget, st.log10_hi = (
                st.widenings + 1,
                st.budget + w.extra,
                w.log10_range[1],
            )
            st.asked = st.budget

    for step in (bracket_all, widen_all) if brackets_first else (widen_all, bracket_all):
        step()
    assert st.widenings == widenings
    assert st.brackets == MAX_BRACKETS or not brackets_first
    return st.budget - trials


@pytest.mark.parametrize("trials, widenings", [(8, 2), (5, 2), (1, 3), (12, 0), (30, 1)])
def test_the_announced_bound_is_what_bracketing_and_widening_can_add_at_most(trials, widenings):
    worst = _grow(trials, widenings, brackets_first=True)
    assert max_extra_trials(trials, widenings) == worst
    assert _grow(trials, widenings, brackets_first=False) <= worst
    assert max_extra_trials(0, 2) == 0  # no Optuna phase, nothing to widen or bracket
    assert max_extra_trials(8, 2) == 14  # default.yaml: 8 + 2 brackets -> 15 -> 22
