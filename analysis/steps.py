"""Steps to a target against batch size (Shallue et al. 2018) and its three regimes.

Trials of a sweep with `target: {metric: val_acc, value: 0.97}` report `steps_to_target`: the
first step count, at epoch granularity, at which the metric reached the target (NaN if never).
Per batch size, the curve takes the fewest steps over the learning rates (and warmups) tried:
seeds averaged per configuration, trials that never reached the target left out.

Regimes, by a continuous piecewise-linear fit in log-log (`fit_regimes`):
    log S(B) = a - min(x, x1) + m * (clip(x, x1, x2) - x1),   x = log10 B
i.e. perfect scaling (slope -1: doubling the batch halves the steps) up to B1 = 10^x1, a
straight diminishing-returns segment of slope m in [-1, 0] up to B2 = 10^x2, and a plateau
(slope 0: more batch buys no fewer steps) beyond. The breakpoints are found by exhaustive search
over a log grid of candidates between the smallest and the largest batch size (every pair
x1 <= x2), a and m by least squares for each pair (m clipped to [-1, 0]); the pair with the
least squared error wins. A breakpoint at an end of the measured range means that regime was
not observed.

Beside the regimes, McCandlish et al.'s (2018) law S(B) = S_min (1 + B_crit / B) is fitted
by least squares in log10 steps (`fit_critical`), with a profile interval for B_crit (F-test
on the residual variance): perfect scaling below B_crit, a floor of S_min steps above it.

    curve = steps_curve(results.trials)
    curve.table, curve.fit.b1, curve.fit.b2
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import f as f_dist

from trainables.contract import maximize

STEPS = "steps_to_target"
MIN_POINTS = 3  # batch sizes that reached the target, needed for the regime fit
GRID = 61  # breakpoint candidates over the measured log10 B range
REGIMES = ("perfect scaling", "diminishing returns", "plateau")
NEAR_PERFECT, NEAR_FLAT = -0.9, -0.1  # a middle segment this steep / flat counts as that regime


@dataclass(frozen=True)
class Regimes:
    """The fitted piecewise curve (see the module docstring)."""

    x1: float  # log10 B where perfect scaling ends
    x2: float  # log10 B where the plateau starts
    a: float  # log10 S = a - x on the perfect-scaling segment
    slope_mid: float  # log-log slope of the diminishing-returns segment
    rmse: float  # decades of log10 steps
    x_min: float
    x_max: float

    @property
    def b1(self) -> float:
        return float(10**self.x1)

    @property
    def b2(self) -> float:
        return float(10**self.x2)

    @property
    def has_perfect(self) -> bool:
        return self.x1 > self.x_min + 1e-9

    @property
    def has_plateau(self) -> bool:
        return self.x2 < self.x_max - 1e-9

    def log_steps(self, x: np.ndarray | float) -> np.ndarray:
        x = np.asarray(x, dtype=float)
        return (
            self.a
            - np.minimum(x, self.x1)
            + self.slope_mid * (np.clip(x, self.x1, self.x2) - self.x1)
        )

    def regime(self, batch: float) -> str:
        """Regime of one batch size: its segment of the fit."""
        x = float(np.log10(batch))
        if self.has_perfect and x <= self.x1 + 1e-9:
            return REGIMES[0]
        if self.has_plateau and x >= self.x2 - 1e-9:
            return REGIMES[2]
        if self.slope_mid <= NEAR_PERFECT:
            return REGIMES[0]
        if self.slope_mid >= NEAR_FLAT:
            return REGIMES[2]
        return REGIMES[1]


def _fit_pair(x: np.ndarray, y: np.ndarray, x1: float, x2: float) -> tuple[float, float, float]:
    """(a, m, sse) of the piecewise curve with breakpoints x1 <= x2."""
    target = y + np.minimum(x, x1)
    z = np.clip(x, x1, x2) - x1
    if np.ptp(z) > 0:
        m = float(np.polyfit(z, target, 1)[0])
        m = min(max(m, -1.0), 0.0)
    else:
        m = 0.0
    a = float(np.mean(target - m * z))
    return a, m, float(np.sum((target - a - m * z) ** 2))


def fit_regimes(batch: np.ndarray, steps: np.ndarray) -> Regimes | None:
    """Piecewise fit of log10 steps against log10 batch size; None with < MIN_POINTS points."""
    ok = np.isfinite(steps) & (steps > 0)
    x, y = np.log10(np.asarray(batch, dtype=float)[ok]), np.log10(np.asarray(steps)[ok])
    if len(x) < MIN_POINTS:
        return None
    grid = np.linspace(x.min(), x.max(), GRID)
    best: tuple[float, float, float, float, float] | None = None
    for i, x1 in enumerate(grid):
        for x2 in grid[i:]:
            a, m, sse = _fit_pair(x, y, x1, x2)
            if best is None or sse < best[4] - 1e-12:
                best = (x1, x2, a, m, sse)
    x1, x2, a, m, sse = best  # type: ignore[misc]
    return Regimes(
        float(x1), float(x2), a, m, float(np.sqrt(sse / len(x))), float(x.min()), float(x.max())
    )


@dataclass(frozen=True)
class Critical:
    """S(B) = S_min (1 + B_crit / B), fitted in log10 steps."""

    s_min: float
    b_crit: float | None  # None: runs off the searched range (no knee seen)
    b_crit_ci: tuple[float | None, float | None]
    rmse: float  # decades

    def steps(self, batch: np.ndarray | float) -> np.ndarray:
        b = np.asarray(batch, dtype=float)
        return self.s_min * (1 + (self.b_crit or 0.0) / b)


def _critical_sse(u: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Residual sums of squares and log10 S_min for log10 B_crit = u (profiled)."""
    shape = np.log10(1 + 10 ** (u[:, None] - x[None, :]))
    level = np.mean(y[None, :] - shape, axis=1)
    return np.sum((y[None, :] - shape - level[:, None]) ** 2, axis=1), level


def fit_critical(batch: np.ndarray, steps: np.ndarray) -> Critical | None:
    """The McCandlish law with a 95% profile interval for B_crit; None with < MIN_POINTS."""
    ok = np.isfinite(steps) & (steps > 0)
    x, y = np.log10(np.asarray(batch, dtype=float)[ok]), np.log10(np.asarray(steps)[ok])
    n = len(x)
    if n < MIN_POINTS:
        return None
    grid = np.linspace(x.min() - 3, x.max() + 3, 1201)
    sse, level = _critical_sse(grid, x, y)
    k = int(np.argmin(sse))
    sse_min = max(float(sse[k]), 1e-12)
    # profile interval: {u : (SSE(u) - SSE_min) / (SSE_min / (n - 2)) <= F(1, n - 2)}
    thr = sse_min * (1 + float(f_dist.ppf(0.95, 1, n - 2)) / (n - 2)) if n > 2 else np.inf
    inside = grid[sse <= thr]
    lo = None if inside.min() <= grid[0] + 1e-9 else float(10 ** inside.min())
    hi = None if inside.max() >= grid[-1] - 1e-9 else float(10 ** inside.max())
    off = k in (0, len(grid) - 1)
    return Critical(
        float(10 ** level[k]),
        None if off else float(10 ** grid[k]),
        (lo, hi),
        float(np.sqrt(sse_min / n)),
    )


def critical_text(c: Critical | None) -> str:
    if c is None:
        return f"S_min (1 + B_crit / B) not fitted: fewer than {MIN_POINTS} batch sizes."
    fmt = lambda v: "unbounded" if v is None else f"{v:.3g}"  # noqa: E731
    if c.b_crit is None:
        return (
            f"McCandlish et al.'s S(B) = S_min (1 + B_crit / B): no knee inside the searched "
            f"range (B_crit 95% CI {fmt(c.b_crit_ci[0])} to {fmt(c.b_crit_ci[1])})."
        )
    return (
        f"McCandlish et al.'s S(B) = S_min (1 + B_crit / B): S_min = {c.s_min:.3g} steps, "
        f"B_crit = {c.b_crit:.3g} (95% CI {fmt(c.b_crit_ci[0])} to {fmt(c.b_crit_ci[1])}; "
        f"residual {c.rmse:.3f} decades)."
    )


@dataclass(frozen=True)
class StepsCurve:
    """Fewest steps to the target per batch size, and its regimes."""

    table: pd.DataFrame  # batch_size, steps, lr, n_trials, n_reached, regime
    target: str  # e.g. "val_acc >= 0.97" ("" when params.json does not say)
    fit: Regimes | None
    critical: Critical | None = None

    @property
    def reached(self) -> pd.DataFrame:
        return self.table[self.table["steps"].notna()]


def target_text(trials: pd.DataFrame) -> str:
    """The target as the trials' params.json state it, e.g. 'val_acc >= 0.97'."""
    if "target_metric" not in trials.columns:
        return ""
    pairs = trials[["target_metric", "target_value"]].dropna().drop_duplicates()
    pairs = pairs[pairs["target_metric"].astype(str) != ""]
    if pairs.empty:
        return ""
    texts = [
        f"{m} {'>=' if maximize(str(m)) else '<='} {float(v):g}"
        for m, v in pairs.itertuples(index=False)
    ]
    return " / ".join(texts)


def has_steps(trials: pd.DataFrame) -> bool:
    """Does any finished trial report a finite steps_to_target?"""
    if STEPS not in trials.columns:
        return False
    return bool(np.isfinite(pd.to_numeric(trials[STEPS], errors="coerce")).any())


def steps_curve(trials: pd.DataFrame) -> StepsCurve | None:
    """The curve and its regimes; None when no trial reached a target."""
    if not has_steps(trials):
        return None
    fin = trials[trials["status"].isin(("done", "diverged"))].copy()
    fin[STEPS] = pd.to_numeric(fin[STEPS], errors="coerce")
    reached = np.isfinite(fin[STEPS])
    counts = fin.assign(reached=reached).groupby("batch_size")["reached"].agg(["size", "sum"])
    means = fin[reached].groupby(["batch_size", "lr", "warmup_epochs"])[STEPS].mean().reset_index()
    fewest = means.loc[means.groupby("batch_size")[STEPS].idxmin()].set_index("batch_size")
    batches = sorted(int(b) for b in fin["batch_size"].unique())
    table = pd.DataFrame(
        {
            "batch_size": batches,
            "steps": [
                float(fewest.at[b, STEPS]) if b in fewest.index else np.nan for b in batches
            ],
            "lr": [float(fewest.at[b, "lr"]) if b in fewest.index else np.nan for b in batches],
        }
    )
    table["n_trials"] = table["batch_size"].map(counts["size"]).fillna(0).astype(int)
    table["n_reached"] = table["batch_size"].map(counts["sum"]).fillna(0).astype(int)
    fit = fit_regimes(table["batch_size"].to_numpy(), table["steps"].to_numpy())
    table["regime"] = [
        "not reached" if not np.isfinite(s) else (fit.regime(b) if fit else "")
        for b, s in zip(table["batch_size"], table["steps"], strict=True)
    ]
    crit = fit_critical(table["batch_size"].to_numpy(), table["steps"].to_numpy())
    return StepsCurve(table.reset_index(drop=True), target_text(trials), fit, crit)


def regimes_text(curve: StepsCurve) -> str:
    """The regimes in words, with how they were found."""
    f = curve.fit
    if f is None:
        return f"Regimes not fitted: fewer than {MIN_POINTS} batch sizes reached the target."
    parts = []
    if f.has_perfect:
        parts.append(f"perfect scaling (slope -1) up to B1 = {f.b1:.3g}")
    else:
        parts.append("no perfect-scaling regime at the measured batch sizes")
    mid_lo, mid_hi = (
        (f.b1 if f.has_perfect else 10**f.x_min),
        (f.b2 if f.has_plateau else 10**f.x_max),
    )
    if mid_hi > mid_lo * 1.01:
        parts.append(
            f"a segment of slope {f.slope_mid:.2f} from B = {mid_lo:.3g} to "
            f"{mid_hi:.3g} ({curve_kind(f.slope_mid)})"
        )
    if f.has_plateau:
        parts.append(f"a plateau (slope 0) from B2 = {f.b2:.3g}")
    else:
        parts.append("no plateau within the measured range")
    return (
        "Steps-to-target regimes: " + "; ".join(parts) + f". Fit: continuous piecewise-linear "
        f"in log10 steps against log10 B (slope -1, then a free slope in [-1, 0], then 0), "
        f"breakpoints by exhaustive search over {GRID} log-spaced candidates, residual "
        f"{f.rmse:.3f} decades."
    )


def curve_kind(slope: float) -> str:
    if slope <= NEAR_PERFECT:
        return "still perfect scaling"
    if slope >= NEAR_FLAT:
        return "already a plateau"
    return "diminishing returns"


def unreached_text(curve: StepsCurve) -> str | None:
    """Which batch sizes never reached the target (a budget in epochs truncates large B)."""
    never = curve.table[curve.table["steps"].isna()]
    if never.empty:
        return None
    bs = ", ".join(str(int(b)) for b in never["batch_size"])
    return (
        f"No trial reached the target at B = {bs} within its epoch budget: a fixed budget of "
        f"epochs gives large batches few steps, so in the plateau regime they run out; "
        f"raise `epochs` to see their steps-to-target."
    )
