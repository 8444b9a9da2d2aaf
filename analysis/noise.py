"""The measured gradient noise scale B_simple beside the B_noise fitted to the best lrs.

McCandlish et al. (2018) predict the critical batch size, where the best lr stops growing
linearly, from the gradient noise scale B_simple = tr(Sigma) / |G|^2. Trials of a sweep with
`measure_noise_scale: true` report it per epoch (`noise_scale`; trainables.noise_scale). Here,
for every batch size, the value at its best lr: the final-epoch `noise_scale` of the finished
trial(s) whose lr is nearest (in log lr) to the best lr of `analysis.inference` (the median over
the seeds and warmups at that lr), then the median over batch sizes as a summary. It is
compared with the saturating fit's B_noise: the theory says they should be of the same order
(B_simple approximates B_crit; it omits the Hessian's shape, so it is not exact).

    ns = measured_noise_scale(results.trials, best)
    ns.table, ns.median
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

NOISE = "noise_scale"
AGREE_FACTOR = 3.0  # measured and fitted within this factor "agree in order of magnitude"


@dataclass(frozen=True)
class NoiseScale:
    table: pd.DataFrame  # batch_size, lr_best, lr_trial, noise_scale, n_trials
    median: float | None  # over batch sizes

    @property
    def range(self) -> tuple[float, float] | None:
        v = self.table["noise_scale"].dropna()
        return (float(v.min()), float(v.max())) if len(v) else None


def has_noise_scale(trials: pd.DataFrame) -> bool:
    if NOISE not in trials.columns:
        return False
    return bool(np.isfinite(pd.to_numeric(trials[NOISE], errors="coerce")).any())


def measured_noise_scale(trials: pd.DataFrame, best: pd.DataFrame) -> NoiseScale | None:
    """B_simple at each batch size's best lr; None when no trial measured it."""
    if not has_noise_scale(trials) or best.empty:
        return None
    done = trials[trials["status"] == "done"].copy()
    done[NOISE] = pd.to_numeric(done[NOISE], errors="coerce")
    done = done[np.isfinite(done[NOISE])]
    rows = []
    for _, b in best.iterrows():
        lr_best = b["lr"] if pd.notna(b["lr"]) else b.get("lr_best_tried")
        g = done[done["batch_size"] == b["batch_size"]]
        if g.empty or lr_best is None or pd.isna(lr_best):
            rows.append((int(b["batch_size"]), lr_best, None, math.nan, 0))
            continue
        dist = np.abs(np.log10(g["lr"].to_numpy(dtype=float) / float(lr_best)))
        nearest = g[dist <= dist.min() + 1e-6]
        rows.append(
            (
                int(b["batch_size"]),
                float(lr_best),
                float(nearest["lr"].iloc[0]),
                float(nearest[NOISE].median()),
                len(nearest),
            )
        )
    table = pd.DataFrame(
        rows, columns=["batch_size", "lr_best", "lr_trial", "noise_scale", "n_trials"]
    )
    values = table["noise_scale"].dropna()
    return NoiseScale(table, float(values.median()) if len(values) else None)


def comparison_text(
    ns: NoiseScale, b_noise: float | None, b_noise_ci: tuple[float | None, float | None]
) -> str:
    """One paragraph: the measured B_simple against the fitted B_noise."""
    if ns.median is None:
        return "The trials measured no finite gradient noise scale."
    lo, hi = ns.range
    measured = (
        f"Measured gradient noise scale B_simple (two-batch estimator, final epoch, at "
        f"each batch size's best lr): median {ns.median:.3g} over "
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
