"""Which scaling rule do the best learning rates follow? Weighted fits, AIC and the verdict.

Input: the table of `analysis.best.estimate_best_lr`. Only batch sizes whose optimum was located
(not `at_edge`) enter the fits; each is weighted by its bootstrap CI, turned into a standard
error of log10 lr* (CI width / 3.92, floored at SIGMA_FLOOR decades). Models of log10 lr*(B):

- `linear`: alpha = 1 fixed (1 free parameter, the intercept)
- `sqrt`: alpha = 0.5 fixed (1)
- `power`: free alpha, 95% CI from weighted least squares (2)
- `saturating`: lr* = lr_max / (1 + B_noise / B) (2), B_noise CI from the profile chi-square
- `constant`: alpha = 0 fixed (1), "no lr change needed" (the article's claim for Adam); fitted
  only when asked (`fit_rules(best, constant=True)`, for adaptive optimizers)

Comparison: AIC = chi2 / c + 2k, where c = max(1, reduced chi2 of the better two-parameter
model) corrects for scatter beyond the bootstrap errors (quasi-AIC). A two-parameter model is
`best_model` only if its AIC beats the best one-parameter model by at least AIC_MARGIN (4).

Verdict (issue 4), in this order:
1. `inconclusive` when fewer than MIN_POINTS batch sizes have a located optimum (e.g. the pure
   linear-scaling grid, one lr per batch size: the optimum was never located).
2. `neither` when `best_model` is `saturating` (a single power law across the knee reads about
   0.5 by accident).
2b. `neither` when the best lr rises and then falls (`surge`, Li et al. 2024; see
   `detect_surge`): no monotone rule describes it.
3. `linear` / `sqrt` when the alpha CI contains 1 / 0.5, excludes the other (and 0, when the
   constant model is fitted), and its half-width is at most the gap between the rules
   (width <= MAX_CI_WIDTH): a CI such as -17 to 0.7 happens to exclude 1 but supports nothing.
4. `neither` when the alpha CI excludes both (a power law far from both).
5. `inconclusive` otherwise (the CI contains both, or is too wide); the verdict says what to
   run to separate the rules.

    >>> fits = fit_rules(best)
    >>> verdict = decide_verdict(fits, best)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.special import stdtrit

SIGMA_FLOOR = 0.01  # decades: no best lr is known better than ~2%
SIGMA_UNKNOWN = 0.05  # decades, when the best-lr table has no CI (n_boot = 0)
MIN_POINTS = 3
MAX_CI_WIDTH = 0.5  # alpha CI width: half-width at most the 0.5 gap between the rules
AIC_MARGIN = 4.0  # an extra parameter must buy at least this much AIC
LINEAR_SLOPE = 0.8  # the saturating rule is "linear" while its log-log slope is >= this
MODEL_K = {"linear": 1, "sqrt": 1, "power": 2, "saturating": 2, "constant": 1}
FIXED_ALPHA = {"linear": 1.0, "sqrt": 0.5, "constant": 0.0}
SURGE_MIN_DROP = 0.1  # decades (x1.26): a surge's fitted fall (and half of it: its rise)
Z95 = 1.959963984540054  # normal 97.5% quantile
CHI2_95 = Z95**2  # chi-square(1) 95% quantile


@dataclass(frozen=True)
class RuleFits:
    """Result of `fit_rules`. Values that could not be computed are None."""

    points: pd.DataFrame  # batch_size, log_b, log_lr, sigma of the fitted batch sizes
    min_batch: int | None  # smallest batch size of the sweep (the rules are drawn through it)
    alpha: float | None = None
    alpha_ci: tuple[float | None, float | None] = (None, None)
    power_intercept: float | None = None  # log10 lr* at B = 1 under the power law
    power_cov: list[list[float]] | None = None  # of (intercept, alpha), scaled
    t_quantile: float = Z95  # multiplies standard errors into 95% intervals
    intercepts: dict[str, float] = field(default_factory=dict)  # log10 lr* at B = 1
    chi2: dict[str, float] = field(default_factory=dict)
    aic: dict[str, float] = field(default_factory=dict)
    bic: dict[str, float] = field(default_factory=dict)
    c_hat: float = 1.0
    lr_max: float | None = None
    b_noise: float | None = None
    b_noise_ci: tuple[float | None, float | None] = (None, None)
    best_model: str | None = None
    surge: Surge | None = None  # the best lr rises then falls (None: not detected / not tested)

    @property
    def n_points(self) -> int:
        return len(self.points)

    @property
    def batch_range(self) -> tuple[int, int] | None:
        if self.points.empty:
            return None
        return int(self.points["batch_size"].min()), int(self.points["batch_size"].max())

    def lr_at(self, model: str, batch: np.ndarray | float) -> np.ndarray | float | None:
        """The fitted lr*(B) of one model (None when that model was not fitted)."""
        b = np.asarray(batch, dtype=float)
        if model == "saturating":
            if self.lr_max is None:
                return None
            return self.lr_max / (1 + (self.b_noise or 0.0) / b)
        if model == "power":
            if self.alpha is None:
                return None
            return 10 ** (self.power_intercept + self.alpha * np.log10(b))
        if model not in self.intercepts:
            return None
        return 10 ** (self.intercepts[model] + FIXED_ALPHA[model] * np.log10(b))

    @property
    def lr_at_min_batch(self) -> float | None:
        if self.min_batch is None or self.alpha is None:
            return None
        return float(self.lr_at("power", self.min_batch))


@dataclass(frozen=True)
class Surge:
    """The best lr rises, peaks inside the measured range and falls (see `detect_surge`)."""

    b_peak: float  # vertex of the log-log parabola
    lr_peak: float
    rise_decades: float  # fitted peak over the fitted lr* at the smallest batch size
    fall_decades: float  # ... and over the one at the largest batch size
    d_aic: float  # AIC of the best monotone rule minus that of the parabola
    coef: tuple[float, float, float]  # log10 lr* = c0 + c1 log10 B + c2 (log10 B)^2

    def lr_at(self, batch: np.ndarray | float) -> np.ndarray:
        x = np.log10(np.asarray(batch, dtype=float))
        return 10 ** (self.coef[0] + self.coef[1] * x + self.coef[2] * x * x)


def detect_surge(pts: pd.DataFrame, chi2: dict[str, float]) -> Surge | None:
    """A significant interior maximum of lr*(B): a parabola in log-log (3 parameters) beats every
    monotone rule fitted (`chi2` of linear, sqrt, power, saturating, constant) by AIC_MARGIN,
    its vertex lies inside the batch range, and the fitted lr* rises by SURGE_MIN_DROP / 2 and
    falls by SURGE_MIN_DROP decades around it. A saturating rule (rising, then flat) has no
    fall, a constant lr no rise. Needs 5 located optima; the overdispersion of the AIC is the
    parabola's reduced chi2 (the richest model)."""
    n = len(pts)
    if n < 5 or not chi2:
        return None
    x, y = pts["log_b"].to_numpy(), pts["log_lr"].to_numpy()
    w = 1 / pts["sigma"].to_numpy() ** 2
    design = np.stack([np.ones_like(x), x, x * x], axis=1)
    coef = np.linalg.lstsq(design * np.sqrt(w)[:, None], y * np.sqrt(w), rcond=None)[0]
    chi2_q = float(np.sum(w * (y - design @ coef) ** 2))
    c_hat = max(1.0, chi2_q / (n - 3))
    aic_mono = min(c / c_hat + 2 * MODEL_K[m] for m, c in chi2.items())
    d_aic = aic_mono - (chi2_q / c_hat + 6)
    if coef[2] >= 0 or d_aic < AIC_MARGIN:
        return None
    x_v = -coef[1] / (2 * coef[2])
    if not x.min() < x_v < x.max():
        return None
    q = lambda t: coef[0] + coef[1] * t + coef[2] * t * t  # noqa: E731
    rise, fall = q(x_v) - q(x.min()), q(x_v) - q(x.max())
    if rise < SURGE_MIN_DROP / 2 or fall < SURGE_MIN_DROP:
        return None
    return Surge(float(10**x_v), float(10 ** q(x_v)), float(rise), float(fall), float(d_aic),
                 (float(coef[0]), float(coef[1]), float(coef[2])))


def fit_points(best: pd.DataFrame) -> pd.DataFrame:
    """The batch sizes that enter the fits: a located optimum (not at_edge), with its sigma."""
    ok = best[(~best["at_edge"].astype(bool)) & best["lr"].notna()]
    lo = pd.to_numeric(ok["lr_ci_lo"], errors="coerce").to_numpy(dtype=float)
    hi = pd.to_numeric(ok["lr_ci_hi"], errors="coerce").to_numpy(dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        sigma = (np.log10(hi) - np.log10(lo)) / (2 * Z95)
    sigma = np.where(np.isfinite(sigma), np.maximum(sigma, SIGMA_FLOOR), SIGMA_UNKNOWN)
    return pd.DataFrame(
        {
            "batch_size": ok["batch_size"].to_numpy(dtype=int),
            "log_b": np.log10(ok["batch_size"].to_numpy(dtype=float)),
            "log_lr": np.log10(ok["lr"].to_numpy(dtype=float)),
            "sigma": sigma,
        }
    )


def _wls(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Weighted straight line y = c0 + c1 x: (coef, unscaled covariance, chi2)."""
    design = np.stack([np.ones_like(x), x], axis=1)
    cov = np.linalg.inv(design.T @ (w[:, None] * design))
    coef = cov @ design.T @ (w * y)
    chi2 = float(np.sum(w * (y - design @ coef) ** 2))
    return coef, cov, chi2


def _fixed_slope(x: np.ndarray, y: np.ndarray, w: np.ndarray, slope: float) -> tuple[float, float]:
    """Weighted intercept and chi2 of y = c0 + slope * x."""
    c0 = float(np.sum(w * (y - slope * x)) / np.sum(w))
    return c0, float(np.sum(w * (y - c0 - slope * x) ** 2))


def _saturating_chi2(u: np.ndarray, b: np.ndarray, y: np.ndarray, w: np.ndarray):
    """Profile over u = log10 B_noise: chi2(u) and log10 lr_max(u), both shaped like u."""
    m = y[None, :] + np.log10(1 + 10 ** u[:, None] / b[None, :])
    level = (m * w).sum(axis=1) / w.sum()
    return (w * (m - level[:, None]) ** 2).sum(axis=1), level


def _fit_saturating(pts: pd.DataFrame, chi2_lin: float, chi2_flat: float) -> dict:
    b = pts["batch_size"].to_numpy(dtype=float)
    y, w = pts["log_lr"].to_numpy(), 1 / pts["sigma"].to_numpy() ** 2
    u_lo, u_hi = math.log10(b.min()) - 3, math.log10(b.max()) + 3
    grid = np.linspace(u_lo, u_hi, 601)
    chi2, _ = _saturating_chi2(grid, b, y, w)
    k = int(np.argmin(chi2))
    fine = np.linspace(grid[max(k - 1, 0)], grid[min(k + 1, len(grid) - 1)], 401)
    u_best = float(fine[int(np.argmin(_saturating_chi2(fine, b, y, w)[0]))])
    chi2_min, level = (float(v[0]) for v in _saturating_chi2(np.array([u_best]), b, y, w))
    thr = CHI2_95 * max(1.0, chi2_min / (len(b) - 2))
    inside = grid[chi2 <= chi2_min + thr]
    lo = None if chi2_flat <= chi2_min + thr else float(10 ** inside.min())
    hi = None if chi2_lin <= chi2_min + thr else float(10 ** inside.max())
    at_top, at_bottom = u_best >= grid[-3], u_best <= grid[2]
    return {
        "chi2": chi2_min,
        "b_noise": None if (at_top or at_bottom) else 10**u_best,
        "lr_max": None if at_top else 10**level,
        "b_noise_ci": (lo, hi),
    }


def fit_rules(best: pd.DataFrame, constant: bool = False) -> RuleFits:
    """Fit the four rules (five with `constant`: alpha = 0) to the located optima of `best`
    (see the module docstring), and look for a surge."""
    pts = fit_points(best)
    min_batch = int(best["batch_size"].min()) if len(best) else None
    n = len(pts)
    if n < MIN_POINTS:  # two points fit any two-parameter rule exactly: nothing to compare
        return RuleFits(points=pts, min_batch=min_batch)
    x, y = pts["log_b"].to_numpy(), pts["log_lr"].to_numpy()
    w = 1 / pts["sigma"].to_numpy() ** 2
    coef, cov, chi2_pow = _wls(x, y, w)
    c_lin, chi2_lin = _fixed_slope(x, y, w, 1.0)
    c_sqrt, chi2_sqrt = _fixed_slope(x, y, w, 0.5)
    c_flat, chi2_flat = _fixed_slope(x, y, w, 0.0)
    sat = _fit_saturating(pts, chi2_lin, chi2_flat)
    # alpha's CI: Student's t (the weights are estimates), widened by the points' scatter
    # when it exceeds what their CIs allow
    scale = max(chi2_pow / (n - 2), 1.0)
    q = float(stdtrit(n - 2, 0.975))
    se_alpha = math.sqrt(cov[1, 1] * scale)
    chi2 = {"linear": chi2_lin, "sqrt": chi2_sqrt, "power": chi2_pow, "saturating": sat["chi2"]}
    intercepts = {"linear": c_lin, "sqrt": c_sqrt}
    if constant:
        chi2["constant"], intercepts["constant"] = chi2_flat, c_flat
    c_hat = max(1.0, min(chi2_pow, sat["chi2"]) / (n - 2))
    aic = {m: c / c_hat + 2 * MODEL_K[m] for m, c in chi2.items()}
    bic = {m: c / c_hat + MODEL_K[m] * math.log(n) for m, c in chi2.items()}
    return RuleFits(
        points=pts,
        min_batch=min_batch,
        alpha=float(coef[1]),
        alpha_ci=(float(coef[1] - q * se_alpha), float(coef[1] + q * se_alpha)),
        power_intercept=float(coef[0]),
        power_cov=(cov * scale).tolist(),
        t_quantile=q,
        intercepts=intercepts,
        chi2=chi2,
        aic=aic,
        bic=bic,
        c_hat=c_hat,
        lr_max=sat["lr_max"],
        b_noise=sat["b_noise"],
        b_noise_ci=sat["b_noise_ci"],
        best_model=_best_model(aic),
        surge=detect_surge(pts, chi2),
    )


def _best_model(aic: dict[str, float]) -> str:
    one = min((m for m in aic if MODEL_K[m] == 1), key=aic.__getitem__)
    two = min((m for m in aic if MODEL_K[m] == 2), key=aic.__getitem__)
    return two if aic[two] <= aic[one] - AIC_MARGIN else one


@dataclass(frozen=True)
class Verdict:
    """The answer, the paragraph that explains it, and the extra statements of the report."""

    verdict: str  # linear | sqrt | neither | inconclusive
    paragraph: str
    linear_range: str  # piecewise view: where the linear rule holds, the critical batch size
    notes: tuple[str, ...] = ()  # warnings (knee) and what to run next


def _fmt_b(value: float | None) -> str:
    return "?" if value is None else f"{value:.3g}"


def _alpha_text(fits: RuleFits) -> str:
    lo, hi = fits.alpha_ci
    return f"alpha = {fits.alpha:.2f} (95% CI {lo:.2f} to {hi:.2f})"


def linear_range_text(fits: RuleFits) -> str:
    """Piecewise view from the saturating fit: where lr* is still linear in B, and B_noise."""
    if fits.batch_range is None or fits.n_points < MIN_POINTS:
        return "Not estimated: too few batch sizes with a located optimum."
    b_lo, b_hi = fits.batch_range
    lo, hi = fits.b_noise_ci
    if lo is None and hi is None:
        return (
            f"The critical batch size is not located: over B = {b_lo}..{b_hi} a constant lr and "
            f"a linear rule are both consistent with the saturating fit."
        )
    if hi is None:
        return (
            f"No saturation detected: the saturating fit is consistent with a linear regime "
            f"over the whole measured range B = {b_lo}..{b_hi}; B_noise > {lo:.3g} (95%)."
        )
    if fits.b_noise is None:
        return (
            f"The saturating fit degenerates to a constant lr (B_noise -> 0): no linear regime "
            f"is visible over B = {b_lo}..{b_hi}; if the saturating rule holds, the critical "
            f"batch size lies below the measured range (B_noise < {hi:.3g}, 95%)."
        )
    knee = fits.b_noise * (1 - LINEAR_SLOPE) / LINEAR_SLOPE
    ci = f"95% CI {_fmt_b(lo)} to {_fmt_b(hi)}".replace("?", "unbounded")
    if knee < b_lo:
        where = f"below the smallest batch size measured ({b_lo})"
    elif knee >= b_hi:
        where = f"over the whole measured range B = {b_lo}..{b_hi}"
    else:
        where = f"for B <= {knee:.3g} (measured from {b_lo})"
    return (
        f"Critical batch size (saturating fit) B_noise = {fits.b_noise:.3g} ({ci}). The linear "
        f"rule holds (local log-log slope >= {LINEAR_SLOPE}, i.e. B <= B_noise/4) {where}; "
        f"beyond B_noise the best lr flattens towards lr_max = {fits.lr_max:.3g}."
    )


def _knee_note(fits: RuleFits) -> str | None:
    if fits.b_noise is None or fits.batch_range is None:
        return None
    b_lo, b_hi = fits.batch_range
    if not b_lo <= fits.b_noise <= b_hi:
        return None
    return (
        f"The batch range {b_lo}..{b_hi} spans the critical batch size (B_noise = "
        f"{fits.b_noise:.3g}): under the saturating rule the local log-log slope is exactly "
        f"1/2 at B = B_noise, so a single power law fitted across the knee reads about 0.5 by "
        f"accident ({_alpha_text(fits)}); it is not evidence for the sqrt rule."
    )


def _too_few_text(fits: RuleFits, best: pd.DataFrame) -> str:
    n_edge = int(best["at_edge"].sum()) if len(best) else 0
    if n_edge == 0:
        return (
            f"Inconclusive: only {len(best)} batch size(s) were run; at least {MIN_POINTS} with "
            f"a located optimum are needed to fit and compare the rules."
        )
    has = "n_lrs" in best.columns and "n_diverged" in best.columns and len(best) > 0
    if has and bool((best["n_lrs"] == 0).all()):
        return (
            "Inconclusive: every finished trial diverged (or has no finite metric), so no "
            "optimum can be located; search lower learning rates."
        )
    grid_only = has and bool(((best["n_lrs"] <= 1) & (best["n_diverged"] == 0)).all())
    text = (
        f"Inconclusive: the optimum was not located for {n_edge} of {len(best)} batch sizes; "
        f"only {fits.n_points} have a best lr bracketed by worse lrs on both sides (at least "
        f"{MIN_POINTS} are needed), so no rule is fitted."
    )
    if grid_only:
        text += (
            " Only one lr was tried per batch size: a grid that already follows the linear rule "
            "cannot confirm it."
        )
    return text


def _what_to_run(fits: RuleFits, best: pd.DataFrame) -> str:
    n_edge = int(best["at_edge"].sum()) if len(best) else 0
    if fits.n_points < MIN_POINTS and n_edge == 0:
        return (
            f"Run at least {MIN_POINTS} batch sizes (better 5 or more, spread over a factor of "
            f"30 or more), each with lrs on both sides of its optimum."
        )
    if fits.n_points < MIN_POINTS:
        return (
            f"The optimum was not located for {n_edge} of {len(best)} batch sizes (best lr on "
            f"the edge of the lrs tried, or a single lr per batch size, as in the linear-scaling "
            f"grid). To separate the rules, search lr on both sides of the current best for "
            f"every batch size (the Optuna phase, or grid.lr_multipliers such as "
            f"[0.25, 0.5, 1, 2, 4]) until each best lr is bracketed by worse ones, for at least "
            f"{MIN_POINTS} batch sizes."
        )
    half = (fits.alpha_ci[1] - fits.alpha_ci[0]) / 2
    factor = max(half / 0.2, 1.0)  # the CI half-width scales as 1 / (spread of log B)
    b_lo, b_hi = fits.batch_range
    if factor > 3:
        return (
            f"The alpha CI half-width is {half:.2g}, far above the ~0.25 needed to tell 1 from "
            f"0.5: the best lrs are poorly located. Try more lrs around each batch size's "
            f"optimum and more seeds (each best-lr CI should be narrower than ~0.2 decades), "
            f"and more batch sizes over a wider range than {b_lo}..{b_hi}."
        )
    wider = int(b_lo * (b_hi / b_lo) ** factor)
    return (
        f"The alpha CI half-width is {half:.2f}; it must fall below about 0.25 to tell 1 from "
        f"0.5. Options: about {math.ceil(factor**2)}x as many seeds per configuration "
        f"(narrower best-lr CIs), a batch range about {factor:.1f}x wider in log scale (e.g. "
        f"B = {b_lo}..{wider}), or more batch sizes in between."
    )


def decide_verdict(fits: RuleFits, best: pd.DataFrame) -> Verdict:
    """Apply the verdict rules of the module docstring; explain the decision in words."""
    linear_range = linear_range_text(fits)
    knee = _knee_note(fits)
    if fits.n_points < MIN_POINTS or fits.alpha is None:
        return Verdict(
            "inconclusive", _too_few_text(fits, best), linear_range, (_what_to_run(fits, best),)
        )
    b_lo, b_hi = fits.batch_range
    lo, hi = fits.alpha_ci
    span = f"over B = {b_lo}..{b_hi} ({fits.n_points} batch sizes with a located optimum)"
    d_aic = {m: a - min(fits.aic.values()) for m, a in fits.aic.items()}
    aic_text = ", ".join(f"{m} {d:+.1f}" for m, d in sorted(d_aic.items(), key=lambda t: t[1]))
    evidence = f"{_alpha_text(fits)}; AIC relative to the best: {aic_text}."
    notes = tuple(n for n in (knee,) if n)
    if fits.surge is not None:
        text = f"Neither rule {span}: {surge_text(fits.surge)} {evidence}"
        return Verdict("neither", text, linear_range, notes)
    if fits.best_model == "saturating":
        text = (
            f"Neither rule: the best lr saturates {span}. The saturating rule lr* = lr_max / "
            f"(1 + B_noise / B) fits clearly better than any single power law "
            f"(B_noise = {_fmt_b(fits.b_noise)}). {evidence} A single power law across the "
            f"knee reads about 0.5 by accident; the linear rule holds only well below B_noise."
        )
        return Verdict("neither", text, linear_range, notes)
    has1, has05 = lo <= 1.0 <= hi, lo <= 0.5 <= hi
    has0 = "constant" in fits.aic and lo <= 0.0 <= hi
    narrow = hi - lo <= MAX_CI_WIDTH
    if has1 and not has05 and narrow:
        text = f"Linear rule supported {span}: {evidence} The CI excludes the sqrt rule."
        return Verdict("linear", text, linear_range, notes)
    if has05 and not has1 and not has0 and narrow:
        others = "the linear rule" + (" and no lr change" if "constant" in fits.aic else "")
        text = f"Square-root rule supported {span}: {evidence} The CI excludes {others}."
        return Verdict("sqrt", text, linear_range, notes)
    if not has1 and not has05:
        if has0 and narrow:
            text = (
                f"Neither rule {span}: the best lr does not change with batch size (alpha = 0, "
                f"'no lr change needed', is inside the CI; 1 and 0.5 are not). {evidence}"
            )
        else:
            text = (
                f"Neither rule {span}: the best lr follows a power law far from both 1 and 0.5. "
                f"{evidence}"
            )
        return Verdict("neither", text, linear_range, notes)
    contained = [f"{a:g}" for m, a in FIXED_ALPHA.items()
                 if (m in fits.aic or m != "constant") and lo <= a <= hi]
    why = (
        f"the alpha CI contains {' and '.join(contained)}"
        if len(contained) > 1
        else (
            f"the alpha CI is wider than {MAX_CI_WIDTH:g}: its half-width exceeds the gap "
            "between the rules"
        )
    )
    text = f"Inconclusive {span}: the data cannot separate the rules ({why}). {evidence}"
    return Verdict("inconclusive", text, linear_range, (*notes, _what_to_run(fits, best)))


def surge_text(surge: Surge) -> str:
    """One sentence on a detected surge."""
    return (
        f"the best lr rises and then falls (the 'surge' of Li et al. 2024): a parabola in "
        f"log-log peaks at B = {surge.b_peak:.3g} (lr {surge.lr_peak:.3g}), "
        f"{surge.rise_decades:.2f} decades above its value at the smallest batch size and "
        f"{surge.fall_decades:.2f} above the largest, and beats every monotone rule by "
        f"{surge.d_aic:.1f} AIC; no monotone rule (linear, sqrt, power law, saturating, "
        f"constant) describes it."
    )


@dataclass(frozen=True)
class NoChange:
    """The test of 'no lr change needed' (alpha = 0), the article's claim for Adam."""

    result: str  # supported | rejected | inconclusive
    text: str


def no_lr_change(fits: RuleFits) -> NoChange:
    """Judge alpha = 0 like the other fixed rules (`fits` from `fit_rules(..., constant=True)`)."""
    if "constant" not in fits.aic:
        return NoChange("inconclusive", f"Not tested: fewer than {MIN_POINTS} batch sizes have "
                        "a located optimum, so no rule is fitted.")
    lo, hi = fits.alpha_ci
    d_aic = fits.aic["constant"] - min(fits.aic.values())
    evidence = f"{_alpha_text(fits)}; the constant model is {d_aic:+.1f} AIC from the best"
    if fits.surge is not None:
        return NoChange("rejected", f"Rejected: {surge_text(fits.surge)} ({evidence}.)")
    if not lo <= 0.0 <= hi:
        return NoChange("rejected", f"Rejected: the best lr changes with batch size; the alpha "
                        f"CI excludes 0 ({evidence}).")
    if hi - lo <= MAX_CI_WIDTH and not lo <= 0.5 <= hi:
        return NoChange("supported", f"Supported: the alpha CI contains 0 and excludes the sqrt "
                        f"and linear rules ({evidence}).")
    return NoChange("inconclusive", f"Inconclusive: the alpha CI contains 0 but is too wide or "
                    f"also contains 0.5 ({evidence}).")
