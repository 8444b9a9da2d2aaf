"""analysis.fit: rule fits and the verdict, on exact points and on planted-law results folders."""

import math

import numpy as np
import pandas as pd
import pytest

from analysis.best import estimate_best_lr
from analysis.fit import RuleFits, decide_verdict, fit_rules
from analysis.load import load_results
from analysis.synthetic import scenario, write_results

N_BOOT = 200
BATCHES = np.array([8, 16, 32, 64, 128, 256, 512])


def _best_table(lrs, sigma=0.03, at_edge=None) -> pd.DataFrame:
    """A best-lr table as estimate_best_lr returns it, with a CI of +-1.96 sigma decades."""
    lrs = np.asarray(lrs, dtype=float)
    half = 10 ** (1.96 * np.broadcast_to(sigma, lrs.shape))
    return pd.DataFrame(
        {
            "batch_size": BATCHES[: len(lrs)],
            "lr": lrs,
            "lr_ci_lo": lrs / half,
            "lr_ci_hi": lrs * half,
            "at_edge": False if at_edge is None else at_edge,
        }
    )


# ------------------------------------------------------------- exact points
def test_power_law_exponent_is_exact_on_exact_points():
    fits = fit_rules(_best_table(0.01 * (BATCHES / 8) ** 0.7))
    assert fits.alpha == pytest.approx(0.7)
    lo, hi = fits.alpha_ci
    assert lo < 0.7 < hi and hi - lo < 0.1
    assert fits.lr_at_min_batch == pytest.approx(0.01)
    assert fits.best_model == "power"


def test_saturating_fit_recovers_b_noise_on_exact_points():
    fits = fit_rules(_best_table(0.2 / (1 + 100 / BATCHES)))
    assert fits.b_noise == pytest.approx(100, rel=1e-3)
    assert fits.lr_max == pytest.approx(0.2, rel=1e-3)
    assert fits.best_model == "saturating"
    lo, hi = fits.b_noise_ci
    assert lo < 100 < hi


def test_pure_linear_points_give_an_unbounded_b_noise():
    fits = fit_rules(_best_table(0.01 * BATCHES / 8))
    assert fits.best_model == "linear"
    assert fits.b_noise_ci[1] is None  # no upper bound: linear over the whole range
    assert decide_verdict(fits, _best_table(0.01 * BATCHES / 8)).verdict == "linear"


def test_edge_estimates_are_left_out_of_the_fits():
    lrs = 0.01 * BATCHES / 8
    lrs[-2:] = [0.05, 0.05]  # two flat points ... that are only bounds at the edge
    best = _best_table(lrs, at_edge=[False] * 5 + [True] * 2)
    fits = fit_rules(best)
    assert fits.points["batch_size"].tolist() == BATCHES[:5].tolist()
    assert fits.alpha == pytest.approx(1.0)


def test_too_few_located_optima_is_inconclusive_and_says_so():
    best = _best_table(0.01 * BATCHES / 8, at_edge=[False, False] + [True] * 5)
    fits = fit_rules(best)
    v = decide_verdict(fits, best)
    assert v.verdict == "inconclusive"
    assert fits.best_model is None
    assert "not located" in v.paragraph
    assert "bracketed" in v.notes[0]


def test_wide_cis_are_inconclusive_and_say_what_to_run():
    rng = np.random.default_rng(1)
    lrs = 0.01 * (BATCHES[:3] / 8) ** 0.75 * 10 ** rng.normal(0, 0.05, 3)
    best = _best_table(lrs, sigma=0.15)
    v = decide_verdict(fit_rules(best), best)
    assert v.verdict == "inconclusive"
    assert "seeds" in v.notes[-1] and "batch sizes" in v.notes[-1]


def test_a_very_wide_ci_that_happens_to_exclude_one_rule_supports_nothing():
    best = _best_table(0.01 * (BATCHES[:4] / 8) ** 0.5)
    fits = RuleFits(
        points=fit_rules(best).points,
        min_batch=8,
        alpha=-5.0,
        alpha_ci=(-17.0, 0.7),
        aic={"linear": 20.0, "sqrt": 18.0, "power": 4.0, "saturating": 19.0},
        best_model="power",
    )
    v = decide_verdict(fits, best)
    assert v.verdict == "inconclusive"
    assert "wider than" in v.paragraph


# ------------------------------------------------------------- planted-law folders
@pytest.fixture(scope="module")
def analysed(tmp_path_factory):
    cache = {}

    def run(name: str):
        if name not in cache:
            law, spec = scenario(name)
            root = tmp_path_factory.mktemp(name)
            write_results(root, law, spec, seed=0)
            best = estimate_best_lr(load_results(root).trials, n_boot=N_BOOT)
            fits = fit_rules(best)
            cache[name] = (law, best, fits, decide_verdict(fits, best))
        return cache[name]

    return run


@pytest.mark.parametrize("name, truth, other", [("linear", 1.0, 0.5), ("sqrt", 0.5, 1.0)])
def test_alpha_ci_covers_the_planted_rule_and_excludes_the_other(analysed, name, truth, other):
    _, _, fits, verdict = analysed(name)
    lo, hi = fits.alpha_ci
    assert lo <= truth <= hi
    assert not lo <= other <= hi
    assert verdict.verdict == name
    assert fits.best_model == name
    assert f"{name}" in verdict.paragraph.lower()


def test_saturating_truth_is_neither_with_b_noise_within_2x(analysed):
    law, _, fits, verdict = analysed("saturating")
    assert fits.best_model == "saturating"
    assert verdict.verdict == "neither"
    assert law.b_noise / 2 <= fits.b_noise <= law.b_noise * 2
    lo, hi = fits.b_noise_ci
    assert lo is not None and hi is not None and lo <= law.b_noise <= hi
    # the report explains the trap: a single power law across the knee reads ~0.5
    assert "by accident" in verdict.paragraph
    assert any("spans the critical batch size" in n for n in verdict.notes)
    assert "Critical batch size" in verdict.linear_range


def test_power_law_far_from_both_rules_is_neither(analysed):
    law, _, fits, verdict = analysed("power")
    lo, hi = fits.alpha_ci
    assert lo <= law.alpha <= hi
    assert not lo <= 0.5 <= hi and not lo <= 1.0 <= hi
    assert verdict.verdict == "neither"


def test_planted_edge_optimum_is_flagged_and_left_out(analysed):
    _, best, fits, verdict = analysed("edge")
    assert best.loc[best["at_edge"], "batch_size"].tolist() == [256]
    assert 256 not in fits.points["batch_size"].tolist()
    assert verdict.verdict == "linear"


def test_linear_scaling_grid_alone_is_inconclusive(analysed):
    _, best, fits, verdict = analysed("grid_only")
    assert best["at_edge"].all()
    assert fits.alpha is None and fits.best_model is None
    assert verdict.verdict == "inconclusive"
    assert "optimum was not located" in verdict.paragraph
    assert "cannot confirm" in verdict.paragraph


def test_underpowered_sweep_is_inconclusive(analysed):
    _, _, fits, verdict = analysed("underpowered")
    lo, hi = fits.alpha_ci
    assert lo <= 0.5 <= hi and lo <= 1.0 <= hi
    assert verdict.verdict == "inconclusive"
    assert math.isfinite(fits.alpha)
