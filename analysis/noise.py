"""The measured gradient noise scale B_simple beside the B_noise fitted to the best lrs.

McCandlish et al. (2018) predict the critical batch size, where the best lr stops growing
linearly, from the gradient noise scale B_simple = tr(Sigma) / |G|^2. Trials of a sweep with
`measure_noise_scale: true` report it per epoch (`noise_scale`; trainables.noise_scale).

B_simple grows as training converges (|G|^2 shrinks), so batch sizes are compared at equal
training progress, not at their final epoch: for each batch size, the trials nearest its best
lr (within NEAR_DECADES; every seed and warmup there), and for each such trial the noise scale
interpolated at the epoch where its training loss first fell to a common level, the highest
final training loss among them (a level every one of them reached). Per batch size: the
geometric mean over those trials with a 95% t-interval on the log scale (when there are two or
more); overall: the geometric mean over batch sizes (B_simple at equal progress should not
depend on B) with its t-interval. It is compared with the saturating fit's B_noise: they
should be of the same order (B_simple omits the Hessian's shape, so it is not exact).

    ns = measured_noise_scale(results.trials, best, results.epochs)
    ns.table, ns.median, ns.ci
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import t as student_t

NOISE = "noise_scale"
AGREE_FACTOR = 3.0  # measured and fitted within this factor "agree in order of magnitude"
NEAR_DECADES = 0.15  # trials this close to the best lr measure it there


@dataclass(frozen=True)
class NoiseScale:
    table: pd.DataFrame  # batch_size, lr_best, lr_trial, noise_scale, ci_lo, ci_hi, n_trials
    median: float | None  # over batch sizes (geometric mean at equal progress)
    level: float | None = None  # the training loss at which they are compared
    ci: tuple[float | None, float | None] = (None, None)

    @property
    def range(self) -> tuple[float, float] | None:
        v = self.table["noise_scale"].dropna()
        return (float(v.min()), float(v.max())) if len(v) else None


def has_noise_scale(trials: pd.DataFrame) -> bool:
    if NOISE not in trials.columns:
        return False
    return bool(np.isfinite(pd.to_numeric(trials[NOISE], errors="coerce")).any())


def _log_mean_ci(values: np.ndarray) -> tuple[float, float | None, float | None]:
    logs = np.log(values)
    m = float(np.mean(logs))
    if len(logs) < 2:
        return math.exp(m), None, None
    half = float(student_t.ppf(0.975, len(logs) - 1) * np.std(logs, ddof=1) / math.sqrt(len(logs)))
    return math.exp(m), math.exp(m - half), math.exp(m + half)


def _at_level(ep: pd.DataFrame, level: float) -> float:
    """A trial's noise scale where its training loss first fell to `level` (linear in epochs
    between the two epochs around the crossing); its final value when it never got there."""
    ep = ep.sort_values("epoch")
    loss = pd.to_numeric(ep["train_loss"], errors="coerce").to_numpy(dtype=float)
    ns = pd.to_numeric(ep[NOISE], errors="coerce").to_numpy(dtype=float)
    ok = np.isfinite(loss) & np.isfinite(ns)
    loss, ns = loss[ok], ns[ok]
    if len(ns) == 0:
        return math.nan
    below = np.flatnonzero(loss <= level)
    if len(below) == 0:
        return float(ns[-1])
    k = int(below[0])
    if k == 0:
        return float(ns[0])
    frac = (loss[k - 1] - level) / max(loss[k - 1] - loss[k], 1e-300)
    return float(ns[k - 1] + frac * (ns[k] - ns[k - 1]))


def measured_noise_scale(
    trials: pd.DataFrame, best: pd.DataFrame, epochs: pd.DataFrame | None = None
) -> NoiseScale | None:
    """B_simple at each batch size's best lr, at equal training progress; None when no trial
    measured it."""
    if not has_noise_scale(trials) or best.empty:
        return None
    done = trials[trials["status"] == "done"].copy()
    done[NOISE] = pd.to_numeric(done[NOISE], errors="coerce")
    done = done[np.isfinite(done[NOISE])]
    chosen: dict[int, tuple[float, pd.DataFrame]] = {}
    for _, b in best.iterrows():
        lr_best = b["lr"] if pd.notna(b["lr"]) else b.get("lr_best_tried")
        g = done[done["batch_size"] == b["batch_size"]]
        if g.empty or lr_best is None or pd.isna(lr_best):
            continue
        dist = np.abs(np.log10(g["lr"].to_numpy(dtype=float) / float(lr_best)))
        near = g[dist <= max(dist.min() + 1e-6, NEAR_DECADES)]
        chosen[int(b["batch_size"])] = (float(lr_best), near)
    level = None
    if epochs is not None and "train_loss" in epochs.columns and chosen:
        names = pd.concat([near["trial"] for _, near in chosen.values()])
        ep = epochs[epochs["trial"].isin(names)].sort_values("epoch")
        finals = pd.to_numeric(ep.groupby("trial")["train_loss"].last(), errors="coerce")
        finals = finals[np.isfinite(finals)]
        level = float(finals.max()) if len(finals) else None
    rows = []
    for _, b in best.iterrows():
        batch = int(b["batch_size"])
        if batch not in chosen:
            rows.append((batch, None, None, math.nan, None, None, 0))
            continue
        lr_best, near = chosen[batch]
        if level is not None:
            ep = epochs[epochs["trial"].isin(near["trial"])]
            vals = np.array([_at_level(e, level) for _, e in ep.groupby("trial")])
        else:
            vals = near[NOISE].to_numpy(dtype=float)
        vals = vals[np.isfinite(vals) & (vals > 0)]
        if len(vals) == 0:
            rows.append((batch, lr_best, None, math.nan, None, None, 0))
            continue
        mean, lo, hi = _log_mean_ci(vals)
        rows.append((batch, lr_best, float(near["lr"].iloc[0]), mean, lo, hi, len(vals)))
    table = pd.DataFrame(
        rows,
        columns=["batch_size", "lr_best", "lr_trial", "noise_scale", "ci_lo", "ci_hi", "n_trials"],
    )
    values = table["noise_scale"].dropna().to_numpy(dtype=float)
    if len(values) == 0:
        return NoiseScale(table, None, level)
    mean, lo, hi = _log_mean_ci(values)
    return NoiseScale(table, mean, level, (lo, hi))


def comparison_text(
    ns: NoiseScale, b_noise: float | None, b_noise_ci: tuple[float | None, float | None]
) -> str:
    """One paragraph: the measured B_simple against the fitted B_noise."""
    if ns.median is None:
        return "The trials measured no finite gradient noise scale."
    lo, hi = ns.range
    at = (
        "final epoch"
        if ns.level is None
        else f"at equal progress: where the training loss fell to {ns.level:.3g}"
    )
    ci = "" if ns.ci[0] is None else f", 95% CI {ns.ci[0]:.3g} to {ns.ci[1]:.3g}"
    measured = (
        f"Measured gradient noise scale B_simple (two-batch estimator, {at}, near each batch "
        f"size's best lr): {ns.median:.3g}{ci} over "
        f"{int(ns.table['noise_scale'].notna().sum())} batch sizes (range {lo:.3g} to "
        f"{hi:.3g})."
    )
    if b_noise is None:
        ci_lo = b_noise_ci[0]
        bound = f" The fit only bounds it: B_noise > {ci_lo:.3g}." if ci_lo else ""
        return (
            f"{measured} The saturating fit located no critical batch size to compare with.{bound}"
        )
    ratio = ns.median / b_noise
    agree = 1 / AGREE_FACTOR <= ratio <= AGREE_FACTOR
    ci = ""
    if b_noise_ci[0] is not None or b_noise_ci[1] is not None:
        fmt = lambda v: "unbounded" if v is None else f"{v:.3g}"  # noqa: E731
        ci = f" (95% CI {fmt(b_noise_ci[0])} to {fmt(b_noise_ci[1])})"
    verdict = (
        f"they agree within a factor {AGREE_FACTOR:g}, as McCandlish et al. predict"
        if agree
        else f"they differ by more than a factor {AGREE_FACTOR:g}"
    )
    return (
        f"{measured} Fitted critical batch size of the saturating rule: B_noise = "
        f"{b_noise:.3g}{ci}; measured / fitted = {ratio:.2g}: {verdict}."
    )
