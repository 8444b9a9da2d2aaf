"""Intervals and their calibration for the basin model (`analysis.basin`).

- `profile_interval`: the profile-likelihood interval of one parameter, {v : 2 (l_max - l_p(v))
  <= threshold}; a side that does not close within `limit` of the estimate is `None`
  (unbounded: the data bound the parameter on one side only).
- `calibrate`: the interval's coverage on the sweep's own design. Trials are simulated from
  the fitted model at exactly the lrs, warmups and batch sizes that were run (diverged trials
  stay diverged), refitted, and the likelihood-ratio statistic at the planted value is
  recorded. Its empirical 95% quantile replaces the chi-square threshold (3.84) when larger:
  the interval is widened when it under-covers, never narrowed.

    lo, hi = profile_interval(lik, fit.params, fit.loglik, index=0, threshold=3.84)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.optimize import brentq

from analysis.basin import Design, Likelihood, MuModel, maximize

CHI2_1_95 = 3.841458820694124  # 95% quantile of chi-square with 1 degree of freedom
LEVEL = 0.95


def profile_loglik(
    lik: Likelihood, start: np.ndarray, index: int, value: float
) -> tuple[float, np.ndarray]:
    """max log-likelihood with parameter `index` held at `value`, and the argmax."""
    params, ll, _ = maximize(lik, start, hold={index: value})
    return ll, params


def profile_interval(
    lik: Likelihood,
    params: np.ndarray,
    loglik: float,
    index: int,
    threshold: float = CHI2_1_95,
    step: float = 0.05,
    limit: float = 2.0,
    xtol: float = 2e-3,
) -> tuple[float | None, float | None]:
    """Profile-likelihood interval of parameter `index` around the fit (params, loglik)."""
    center = float(params[index])
    out: list[float | None] = []
    for sign in (-1.0, 1.0):
        inside, start = 0.0, params.copy()
        dist, found = step, None
        while dist <= limit + 1e-12:
            ll, p = profile_loglik(lik, start, index, center + sign * dist)
            dev = 2 * (loglik - ll)
            if dev > threshold:
                found = (inside, dist, start)
                break
            inside, start, dist = dist, p, dist * 1.6
        if found is None:
            out.append(None)
            continue
        a, b, s0 = found

        def g(t: float, s0: np.ndarray = s0, sign: float = sign) -> float:
            return 2 * (loglik - profile_loglik(lik, s0, index, center + sign * t)[0]) - threshold

        t = brentq(g, a, b, xtol=xtol) if g(a) < 0 else a
        out.append(center + sign * t)
    return out[0], out[1]


@dataclass(frozen=True)
class Calibration:
    """How the chi-square interval covers on this design, and the threshold actually used."""

    replicates: int  # simulated sweeps refitted
    coverage: float  # share of replicates whose chi-square interval covered the planted value
    threshold: float  # the likelihood-ratio threshold used (>= 3.84)
    n_failed: int  # replicates whose fit failed (no finite likelihood; left out)

    @property
    def widened(self) -> bool:
        return self.threshold > CHI2_1_95 + 1e-9

    @property
    def width_factor(self) -> float:
        """About how much wider the calibrated interval is (square-root of the ratio)."""
        return math.sqrt(self.threshold / CHI2_1_95)


def simulate(lik: Likelihood, params: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """New final metrics for the design of `lik`, drawn from the model at `params`; diverged
    trials stay diverged (nan)."""
    mean, sd = lik.predict(params)
    y = mean + sd * rng.standard_normal(len(mean))
    return np.where(lik.d.diverged, np.nan, y)


def lr_statistics(
    design: Design,
    model: MuModel,
    cut: float,
    truth: np.ndarray,
    indices: list[int],
    replicates: int,
    rng: np.random.Generator,
    refit: Callable[[Likelihood, np.ndarray], tuple[np.ndarray, float, bool]] | None = None,
) -> tuple[np.ndarray, int]:
    """Likelihood-ratio statistics at the planted values of `indices`, per replicate: shape
    (replicates kept, len(indices)), and the number of failed replicates."""
    base = Likelihood(design, model, cut)
    stats, failed = [], 0
    for _ in range(replicates):
        sim = Likelihood(design.with_y(simulate(base, truth, rng)), model, cut)
        p_hat, ll_hat, _ = maximize(sim, truth)
        if not math.isfinite(ll_hat):
            failed += 1
            continue
        row = []
        for j in indices:
            # the null fit starts at the planted values (they satisfy its constraint): on a
            # flat likelihood a start elsewhere can end in another local maximum
            ll0 = maximize(sim, truth, hold={j: float(truth[j])})[1]
            row.append(max(2 * (ll_hat - ll0), 0.0))
        stats.append(row)
    return np.array(stats).reshape(-1, len(indices)), failed


def calibration_from(stats: np.ndarray, failed: int) -> Calibration:
    """Coverage of the chi-square interval and the calibrated threshold from LR statistics.

    The threshold is 3.84 scaled by the mean LR statistic (a Bartlett correction: under the
    model the statistic divided by its mean is closer to chi-square(1) than the statistic
    itself), never below 3.84; the mean is far steadier than an empirical 95% quantile of a
    few hundred replicates. Statistics above 30 (a failed refit) are capped."""
    flat = stats.ravel()
    if flat.size == 0:
        return Calibration(0, math.nan, CHI2_1_95, failed)
    cover = float(np.mean(flat <= CHI2_1_95))
    scale = float(np.mean(np.minimum(flat, 30.0)))
    return Calibration(len(stats), cover, max(CHI2_1_95, CHI2_1_95 * scale), failed)
