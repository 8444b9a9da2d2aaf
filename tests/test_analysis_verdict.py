"""analysis.decision and analysis.verdict: the verdict is an equivalence decision on alpha.

Unit cases on hand-made fits (the interval and the AICc of each rule), then the decision on
planted sweeps under the designs the sweep really runs (analysis.planted): the verdict is
right or undecided, never confidently wrong. `benchmarks/bench_verdict.py` runs the same
scenarios with many replicates and prints the rates."""

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.decision import MIN_RESID_DF, decide
from analysis.inference import NOISE_TREND, STEEP_NOISE_TREND, Inference, RuleFit, infer
from analysis.planted import right_verdict, scenarios, simulate
from analysis.verdict import explain
from trainables.quadratic import best_lr


def _inf(ci, alpha=None, aicc=None, b_noise=None, peak=None, batches=(8, 16, 32, 64)):
    table = pd.DataFrame(
        {
            "batch_size": list(batches),
            "in_fit": [True] * len(batches),
            "at_edge": [False] * len(batches),
        }
    )
    aicc = aicc or {"linear": 0.0, "sqrt": 0.0, "power": 0.0, "saturating": 0.0}
    rules = {m: RuleFit(m, -a / 2, 10, a, (0.0, 1.0), True) for m, a in aicc.items()}
    lo, hi = ci
    return Inference(
        "val_loss",
        False,
        False,
        table,
        100,
        0.1,
        1.3,
        rules=rules,
        alpha=alpha if alpha is not None else (lo + hi) / 2,
        alpha_ci=ci,
        b_noise=b_noise,
        peak_b=peak,
    )


@pytest.mark.parametrize(
    "ci, verdict, reason",
    [
        ((0.85, 1.12), "linear", "inside_linear"),
        ((0.35, 0.62), "sqrt", "inside_sqrt"),
        ((0.52, 1.02), "inconclusive", "overlaps"),  # contains 1, yet supports nothing
        ((0.72, 0.78), "neither", "outside"),  # an intermediate alpha measured sharply
        ((-0.1, 0.15), "neither", "outside"),  # no lr change
        ((1.3, 1.6), "neither", "outside"),
        ((0.6, 0.9), "inconclusive", "overlaps"),
        ((-5.0, 5.0), "inconclusive", "overlaps"),
    ],
)
def test_the_interval_decides_by_equivalence(ci, verdict, reason):
    dec = decide(_inf(ci))
    assert (dec.verdict, dec.reason) == (verdict, reason)


def test_an_open_interval_never_decides():
    assert decide(_inf((0.9, None), alpha=1.0)).verdict == "inconclusive"


def test_the_margin_is_the_users():
    inf = _inf((0.72, 0.78))
    assert decide(inf, margin=0.1).verdict == "neither"
    assert decide(inf, margin=0.24).verdict == "inconclusive"  # 0.74 and 0.76 now inside


def test_inside_the_margin_with_the_exact_rule_clearly_worse_is_still_linear():
    """Equivalence, not a point test: the exact quadratic problem (true slope 0.985) gave
    alpha 0.92 [0.91, 0.94] after 153 trials with the exact linear rule 34-52 AICc behind the
    power law; that is linear within the margin, and the verdict says so."""
    aicc = {"linear": 40.0, "sqrt": 90.0, "power": 0.0, "saturating": 1.0}
    inf = _inf((0.91, 0.94), aicc=aicc, b_noise=5000.0)
    dec = decide(inf)
    assert (dec.verdict, dec.reason) == ("linear", "inside_linear")
    said = explain(inf, dec).paragraph
    assert "linear rule with its margin (the exact rule or the power law behind alpha)" in said
    assert "is not clearly worse than the best rule" in said


def test_inside_the_margin_but_the_power_law_clearly_worse_is_not_linear():
    """A rule that bends (here the log-quadratic one, its peak beyond the range) fits clearly
    better than any power law: alpha is the slope of a law that does not hold."""
    aicc = {"linear": 30.0, "sqrt": 90.0, "power": 28.0, "saturating": 25.0, "curved": 0.0}
    inf = _inf((0.82, 0.88), aicc=aicc, b_noise=5000.0, peak=5000.0)
    dec = decide(inf)
    assert (dec.verdict, dec.reason) == ("inconclusive", "linear_worse")
    assert "bends where a power law cannot" in explain(inf, dec).notes[-1]


def test_a_clearly_better_saturating_rule_with_its_knee_inside_is_neither():
    aicc = {"linear": 40.0, "sqrt": 25.0, "power": 15.0, "saturating": 0.0}
    assert decide(_inf((0.45, 0.55), aicc=aicc, b_noise=30.0)).reason == "saturating"
    # with its knee outside the batch range it is not the reason; alpha decides (and sqrt,
    # clearly worse than the best rule, is not accepted)
    assert decide(_inf((0.45, 0.55), aicc=aicc, b_noise=500.0)).reason == "sqrt_worse"
    # a saturating rule better, but not clearly, does not make it neither; it does keep
    # sqrt from being called (see test_a_supported_bend_inside_the_range_...)
    close = {**aicc, "power": 5.0, "sqrt": 6.0}
    dec = decide(_inf((0.45, 0.55), aicc=close, b_noise=30.0))
    assert (dec.verdict, dec.reason) == ("inconclusive", "bend_supported")
    # and one that fits worse than sqrt by 2 AICc or more does not stop it
    worse = {**close, "saturating": 8.5}
    assert decide(_inf((0.45, 0.55), aicc=worse, b_noise=30.0)).verdict == "sqrt"


def test_a_peak_inside_the_range_is_neither():
    aicc = {"linear": 80.0, "sqrt": 60.0, "power": 50.0, "saturating": 45.0, "curved": 0.0}
    assert decide(_inf((-0.1, 0.1), aicc=aicc, peak=20.0)).reason == "curved"


def test_a_peak_clearly_better_than_a_saturating_knee_is_the_reason_given():
    """Both bent rules beat the power laws with their feature inside the range; the
    log-quadratic one fits clearly better than the saturating one, so the report names the peak
    (a default sweep's report named the knee while the peak was 37 AICc ahead)."""
    aicc = {"linear": 84.0, "sqrt": 48.0, "power": 47.0, "saturating": 37.0, "curved": 0.0}
    inf = _inf((-0.45, 0.76), aicc=aicc, b_noise=26.0, peak=40.0)
    dec = decide(inf)
    assert (dec.verdict, dec.reason) == ("neither", "curved")
    assert "rises and then falls (peak near B = 40" in explain(inf, dec).paragraph
    # a saturating rule within 10 AICc of the peak stays the reason, as before
    close = {**aicc, "saturating": 5.0}
    assert decide(_inf((-0.45, 0.76), aicc=close, b_noise=26.0, peak=40.0)).reason == (
        "saturating"
    )


def test_a_bend_that_fits_best_with_both_rules_clearly_worse_is_neither():
    """Linear, then flat: the saturating rule fits best, its knee inside the range, but not
    clearly better than the power law, whose interval sits inside the linear margin; linear and
    sqrt are each clearly worse than the best rule: neither."""
    aicc = {"linear": 53.0, "sqrt": 98.0, "power": 4.8, "saturating": 0.0, "curved": 1.5}
    inf = _inf((0.82, 0.86), aicc=aicc, b_noise=30.0)
    dec = decide(inf)
    assert (dec.verdict, dec.reason) == ("neither", "rejected")
    assert "linear and sqrt rules are each clearly worse" in explain(inf, dec).paragraph
    # the knee outside the range (a sparse design's degenerate bend): the interval decides
    assert decide(_inf((0.82, 0.86), aicc=aicc, b_noise=5000.0)).verdict == "linear"
    # the power law itself best, but the bend inside the range fits about as well: undecided
    power_best = {**aicc, "power": -1.0}
    assert decide(_inf((0.82, 0.86), aicc=power_best, b_noise=30.0)).reason == "bend_supported"
    # one of the rules not clearly worse, but the bend still fits better: undecided
    lin_ok = {**aicc, "linear": 8.0}
    assert decide(_inf((0.82, 0.86), aicc=lin_ok, b_noise=30.0)).reason == "bend_supported"


def test_a_bend_inside_the_range_rejects_both_rules_when_another_bend_fits_best():
    """The exact quadratic problem over B = 4..1024 (linear, then flat), one loop's 150 trials:
    alpha 0.88 [0.85, 0.90] inside the linear margin; the curved rule best, its peak far beyond
    the range; the saturating rule 9 AICc behind it, its knee at B = 279; the linear rule 85
    and the sqrt rule 218 behind that. `neither` (it spent its budget `inconclusive`,
    `linear_worse`, before); with the knee beyond the range (B = 4..64's mild bend: a
    saturating knee at B = 131 beat the power law by 10 AICc where the true slope is 0.985)
    alpha decides: undecided here."""
    aicc = {
        "linear": 94.1,
        "sqrt": 227.4,
        "constant": 269.0,
        "power": 16.6,
        "saturating": 8.9,
        "curved": 0.0,
    }
    batches = (4, 16, 64, 256, 1024)
    inf = _inf((0.85, 0.90), aicc=aicc, b_noise=279.0, peak=2.6e7, batches=batches)
    dec = decide(inf)
    assert (dec.verdict, dec.reason) == ("neither", "rejected")
    said = explain(inf, dec).paragraph
    assert "the log-quadratic rule fits best" in said
    assert "each clearly worse than the saturating" in said
    assert "knee B_noise = 279 lies inside the range" in said
    outside = _inf((0.85, 0.90), aicc=aicc, b_noise=2000.0, peak=2.6e7, batches=batches)
    assert decide(outside).reason == "linear_worse"
    # the bend inside the range not clearly better than the linear rule: undecided
    close = _inf((0.85, 0.90), aicc={**aicc, "linear": 15.0}, b_noise=279.0, batches=batches)
    assert decide(close).verdict == "inconclusive"


def test_a_supported_bend_inside_the_range_keeps_linear_undecided():
    """Seen on the exact quadratic problem over B = 4..1024 (linear, then flat above B ~ 256):
    alpha's interval inside the linear margin, the saturating rule with its knee inside the
    range about as good as the linear rule; the verdict said `linear`."""
    aicc = {"linear": 0.0, "sqrt": 40.0, "power": 1.5, "saturating": 1.0, "curved": 3.0}
    inf = _inf((0.95, 1.09), aicc=aicc, b_noise=30.0)
    dec = decide(inf)
    assert (dec.verdict, dec.reason) == ("inconclusive", "bend_supported")
    assert dec.candidates == ("linear", "neither")
    words = explain(inf, dec)
    assert "bends inside the range" in words.paragraph
    assert "pin the optima of the largest batch sizes" in words.notes[-1]
    # the bend 2 AICc or more worse than the linear rule: linear
    assert decide(_inf((0.95, 1.09), aicc={**aicc, "saturating": 2.5}, b_noise=30.0)).verdict == (
        "linear"
    )
    # the knee outside the batch range (8..64): no bend inside it; linear
    assert decide(_inf((0.95, 1.09), aicc=aicc, b_noise=5000.0)).verdict == "linear"
    # a peak inside the range, as good as linear: undecided too
    peaked = {**aicc, "saturating": 9.0, "curved": 0.5}
    dec = decide(_inf((0.95, 1.09), aicc=peaked, b_noise=30.0, peak=40.0))
    assert dec.reason == "bend_supported"


def test_an_undecided_verdict_says_what_would_decide_it():
    inf = _inf((0.55, 1.05), alpha=0.9)
    dec = decide(inf)
    assert dec.verdict == "inconclusive" and set(dec.candidates) == {"linear", "sqrt", "neither"}
    assert dec.needed_half_width == pytest.approx(0.1)  # 0.9 sits 0.1 inside [0.8, 1.2]
    assert dec.trials_factor == pytest.approx((0.25 / 0.1) ** 2)
    note = explain(inf, dec).notes[-1]
    assert "must fall to about 0.10" in note and "x the trials" in note


def test_too_few_located_optima_is_inconclusive():
    inf = _inf((0.9, 1.1))
    inf = Inference(**{**inf.__dict__, "alpha": None, "alpha_ci": (None, None)})
    assert decide(inf).reason == "too_few"


@pytest.mark.parametrize("name", ["linear", "sqrt", "alpha_075", "cliff", "narrow", "lr_noise"])
def test_planted_sweeps_are_right_or_undecided(name):
    """Adaptive Optuna-like design, one seed, grid told first, two warmups, asymmetric basin,
    divergence cliff: over six replicates no verdict contradicts the planted law and the
    alpha interval covers it at least four times (at the goal's coverage of 0.9 a scenario
    fails this by chance 1.6% of the time; two of three, as before, 2.8%: the cliff's first
    replicates 200-209 happen to cover 6 of 10, its replicates 210-239 29 of 30)."""
    sc = scenarios()[name]
    covered = 0
    for seed in range(6):
        inf = infer(simulate(sc, 300 + seed), replicates=30, seed=seed)
        dec = decide(inf)
        assert dec.verdict in ("inconclusive", right_verdict(sc.alpha, 0.2)), (seed, dec)
        lo, hi = inf.alpha_ci
        covered += (lo is None or lo <= sc.alpha) and (hi is None or sc.alpha <= hi)
    assert covered >= 4


def test_clean_linear_law_on_a_13_lr_grid_is_linear_and_sharp():
    sc = scenarios()["grid13"]
    inf = infer(simulate(sc, 1), replicates=30)
    lo, hi = inf.alpha_ci
    assert decide(inf).verdict == "linear"
    assert hi - lo <= 0.3


def _few_trials_sweep(per_batch: int, seed: int = 3) -> pd.DataFrame:
    """A planted linear law at B = 8, 32, 128 with `per_batch` lrs near each optimum and
    tiny seed noise (as the exact quadratic problem's best trials)."""
    rng = np.random.default_rng(seed)
    rows = []
    for b in (8, 32, 128):
        mu = math.log10(0.01 * b / 8)
        for k, d in enumerate(np.linspace(-0.6, 0.6, per_batch)):
            x = mu + d + rng.uniform(-0.05, 0.05)
            rows.append(
                {
                    "trial": f"t{b}_{k}",
                    "batch_size": b,
                    "lr": 10**x,
                    "warmup_epochs": 0.0,
                    "seed": k,
                    "status": "done",
                    "val_loss": 0.5
                    + 0.3 * (x - mu) ** 2 * (1 + 0.8 * (x > mu) * (x - mu))
                    + rng.normal(0, 0.008),
                }
            )
    return pd.DataFrame(rows)


def test_too_few_trials_inside_the_basins_is_inconclusive_not_a_collapsed_interval():
    # 4 trials per batch size: 12 in the basins for 11 parameters, the fitted noise has almost
    # nothing to go on; the design loop once stopped on such a fit with alpha's interval 0.03
    # wide around a wrong value
    few = infer(_few_trials_sweep(4), replicates=0)
    dec = decide(few)
    assert few.resid_df is not None and few.resid_df < MIN_RESID_DF
    assert (dec.verdict, dec.reason) == ("inconclusive", "few_in_basin")
    v = explain(few, dec)
    assert "too few trials lie inside the basins" in v.paragraph
    assert f"parameters by {MIN_RESID_DF} or more" in v.notes[-1]
    enough = infer(_few_trials_sweep(9), replicates=0)
    assert enough.resid_df >= MIN_RESID_DF and decide(enough).reason != "few_in_basin"


def test_a_collapsed_noise_fit_of_the_exact_problem_is_not_a_verdict():
    """22 trials of the exact quadratic problem over B = 4..64 (the in-process design loop): the
    fit gives B = 4 all the seed noise (sd 0.12) and B = 64 almost none (0.001; the truth is
    0.008 at both), the noise's drift with B at its bound, and alpha reads 0.73 [0.70, 0.76], a
    confident `neither` where the answer is linear. The guard on trials in the basins (4 left
    beyond the parameters) lets it through; the check of a steep noise trend does not: alpha's
    interval also holds the fit with the same noise at every batch size, and reaches the linear
    margin."""
    trials = pd.read_csv(Path(__file__).parent / "golden" / "quadratic_collapsed_noise_trials.csv")
    inf = infer(trials, replicates=0, warmup=False, quick=True)
    assert inf.resid_df >= MIN_RESID_DF
    assert abs(inf.power_fit.globals[NOISE_TREND]) >= STEEP_NOISE_TREND
    lo, hi = inf.alpha_ci
    chi_lo, chi_hi = inf.alpha_ci_chi2
    assert chi_hi < 0.8 < hi and lo <= chi_lo  # the fitted noise alone: outside both margins
    assert (decide(inf).verdict, decide(inf).reason) == ("inconclusive", "overlaps")
    assert inf.alpha_ci_same_noise is not None and inf.alpha_ci_same_noise[1] > 0.8
    note = [n for n in explain(inf, decide(inf)).notes if "same noise at every batch" in n]
    assert note and "larger at the smallest batch size" in note[0]


def test_a_gentle_noise_trend_leaves_alpha_s_interval_as_fitted():
    inf = infer(_few_trials_sweep(9), replicates=0)
    assert abs(inf.power_fit.globals[NOISE_TREND]) < STEEP_NOISE_TREND
    assert inf.alpha_ci == inf.alpha_ci_chi2 and inf.alpha_ci_same_noise is None


def test_the_saturating_rule_finds_its_knee_inside_the_range_without_the_constant_rule():
    """The design loop fits no constant rule; the saturating rule was then started only from
    its linear limit and missed its better maximum (a knee at B ~ 59 inside 4..64) by 6.6
    AICc: the loop called `linear` on trials the report called `bend_supported`."""
    trials = pd.read_csv(Path(__file__).parent / "golden" / "quadratic_knee_trials.csv")
    with_const = infer(trials, replicates=0, warmup=False, quick=True)
    without = infer(trials, replicates=0, warmup=False, quick=True, constant=False)
    assert abs(without.rules["saturating"].aicc - with_const.rules["saturating"].aicc) < 0.1
    assert 4 < without.b_noise < 64
    assert decide(without).reason == decide(with_const).reason == "bend_supported"


def test_the_rule_with_its_margin_is_never_judged_worse_than_the_exact_rule():
    """The power law pays AICc for its one more parameter: with alpha near the rule's, the
    exact rule can be within 10 of the best where the power law is not; that is no reason to
    withhold the verdict (the fixed grid of the design benchmark lost a decided `linear` so)."""
    aicc = {"linear": 9.0, "sqrt": 90.0, "power": 11.0, "saturating": 30.0, "curved": 0.0}
    dec = decide(_inf((0.95, 1.05), aicc=aicc, b_noise=5000.0, peak=5000.0))
    assert (dec.verdict, dec.reason) == ("linear", "inside_linear")


def test_a_degenerate_same_noise_fit_does_not_open_alpha_s_interval():
    """155 trials of a real exact-problem sweep over B = 4..1024, 134 of them at B = 4: the
    fitted noise drifts steeply, and the fit with the same noise at every B ran off to
    alpha = 708 on flat basins (96 log-likelihood units worse). Its open interval had opened
    alpha's to (-inf, inf), and the design loop, with no interval to act on, sent trial after
    trial to one batch size. A degenerate alternative is no evidence: alpha's interval stays
    the fitted one. Since an optimum is held below the runs that diverged, the sweep's two
    diverged runs keep that fit from running off; without them it still does."""
    trials = pd.read_csv(
        Path(__file__).parent / "golden" / "quadratic_same_noise_degenerate_trials.csv"
    )
    finite = trials[trials.val_loss.notna()]
    inf = infer(finite, replicates=0, warmup=False, quick=True)
    assert abs(inf.power_fit.globals[NOISE_TREND]) >= STEEP_NOISE_TREND
    assert inf.alpha_ci_same_noise is None
    assert inf.alpha_ci == inf.alpha_ci_chi2 and None not in inf.alpha_ci
    held = infer(trials, replicates=0, warmup=False, quick=True)
    assert held.alpha_ci_same_noise is not None and None not in held.alpha_ci


def test_the_quadratic_benchmark_says_how_far_its_sweeps_pin_its_shares():
    """bench_quadratic's shares of optima covered and within 1.25x come from a few sweeps whose
    optima share one fit each; their interval resamples whole sweeps. Thirty sweeps of five or
    three optima, 0.78 covered: the interval holds it and leaves out the goal 0.9; one sweep
    that covers everything and one that covers nothing make it wide."""
    from benchmarks.bench_quadratic import share_intervals

    per_sweep = [(4, 3, 5), (5, 4, 5), (3, 2, 5), (2, 2, 3), (3, 2, 3), (2, 1, 3)] * 5
    (c_lo, c_hi), (w_lo, w_hi) = share_intervals(per_sweep)
    assert c_lo < 19 / 24 < c_hi < 0.9
    assert w_lo < 14 / 24 < w_hi
    (lo, hi), _ = share_intervals([(5, 5, 5), (0, 0, 5)] * 3)
    assert lo < 0.25 and hi > 0.75
    assert share_intervals(per_sweep[:4]) is None  # too few sweeps to resample


def test_no_rule_puts_an_optimum_beyond_a_run_that_diverged():
    """42 trials of the exact problem over B = 4..1024 (the in-process design loop, seed 2, on
    an AMD EPYC): at B = 1024 the loss still falls at lr 1 and the run at lr 3.16 diverged.
    The power law placed that optimum at lr 5.2, beyond the diverged run (its seed noise
    inflated there to make "worse than the run at lr 1" likely), and the verdict was `linear`,
    alpha 0.98 [0.94, 1.02], where the exact answer flattens (`neither`). A run diverges only
    above the optimum: every fit now keeps the optimum below it."""
    trials = pd.read_csv(
        Path(__file__).parent / "golden" / "quadratic_beyond_divergence_trials.csv"
    )
    inf = infer(trials, replicates=0, warmup=False)
    assert decide(inf).verdict != "linear"
    top = inf.table.iloc[-1]
    diverged_lr = trials.loc[(trials.batch_size == 1024) & trials.val_loss.isna(), "lr"].min()
    assert top.lr < diverged_lr and top.lr_ci_hi < diverged_lr * 10**0.05
    fit = inf.power_fit
    mu = fit.model.mu(fit.params[: fit.layout.k_mu], inf.power_design.log_b)
    assert mu[-1] < math.log10(diverged_lr)


def test_pinned_optima_come_from_the_bottom_of_the_basins_and_leave_the_verdict_alone():
    """89 trials of the exact problem over B = 4..1024 (the in-process design loop, seed 12,
    on an AMD EPYC, then 8 pin trials per batch size): the loop's one-decade fit put B = 1024's
    optimum 4.3x low (its basin turns into a divergence wall 0.1 decade above the optimum,
    which the shared parabola cannot follow). Its pin trials walked up to the optimum, and the
    fit within half a decade of basin puts it 1.04x from the exact one; every batch size is
    within 1.25x; the verdict is right."""
    trials = pd.read_csv(Path(__file__).parent / "golden" / "quadratic_pinned_trials.csv")
    inf = infer(trials, replicates=0, warmup=False)
    table = inf.table.set_index("batch_size")
    assert (table["window_decades"] == 0.5).all()
    for b, row in table.iterrows():
        assert abs(math.log10(row["lr"] / best_lr(b))) < math.log10(1.25), b
    wide = infer(trials, replicates=0, warmup=False, bottoms=False).table.set_index("batch_size")
    assert wide.loc[1024, "lr"] < best_lr(1024) / 4  # the one-decade fit, pins left out
    assert decide(inf).verdict == "neither"  # (pins left out of it: tests/test_design.py)
