"""Does warmup move the best lr or the floor? One joint test, then per batch size with Holm.

Three fits of the basin model (`analysis.basin`) on the same trials, differing only in how
warmup enters (a warmup level shifts the optimum by dmu decades and the floor by df):

- `none`: warmup has no effect (every trial on the reference level, the smallest warmup);
- `shared`: one (dmu, df) per warmup level, the same at every batch size (the main model);
- `per_batch`: one (dmu, df) per warmup level and batch size.

The joint test is the likelihood ratio of `none` against `per_batch` (does warmup matter at
any batch size?): one test, so no multiplicity. The per-batch tests (that batch size's own
shifts set to zero) are adjusted with Holm's method across batch sizes. A batch size needs
at least MIN_PER_LEVEL finite trials on each warmup level to get its own shifts.

    wt = warmup_test(design, cut, shared_fit)
    wt.joint_p, wt.shift_mu, wt.per_batch
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
from scipy.stats import chi2

from analysis.basin import FREE, Design, Fit, Likelihood, fit_model
from analysis.profile import profile_interval

MIN_PER_LEVEL = 2
LEVEL = 0.05  # family-wise error rate of the per-batch tests


@dataclass(frozen=True)
class WarmupTest:
    reference: float  # warmup (epochs) of the reference level
    levels: tuple[float, ...]  # the other warmup levels
    shift_mu: tuple[float, ...]  # decades the best lr moves, per level (shared model)
    shift_mu_ci: tuple[tuple[float | None, float | None], ...]
    shift_floor: tuple[float, ...]  # change of the floor, oriented (negative = better)
    shift_floor_ci: tuple[tuple[float | None, float | None], ...]
    joint_stat: float
    joint_df: int
    joint_p: float
    shared_stat: float  # `none` against `shared`
    shared_p: float
    per_batch: pd.DataFrame  # batch_size, stat, df, p, p_holm, significant

    @property
    def matters(self) -> bool:
        return self.joint_p < LEVEL


def _relabel(d: Design, level_of: np.ndarray, warmups: np.ndarray) -> Design:
    return replace(d, wi=level_of, warmups=warmups)


def _per_batch_levels(d: Design, testable: set[int], drop: int | None = None) -> Design:
    """Each (testable batch, warmup > ref) pair gets its own level; `drop`'s go to level 0."""
    wi = d.wi.copy()
    new_levels = [d.warmups[0]] + list(d.warmups[1:])  # shared levels keep their index
    for b in sorted(testable):
        for w in range(1, d.nw):
            m = (d.bi == b) & (d.wi == w)
            if not m.any():
                continue
            if b == drop:
                wi[m] = 0
            else:
                wi[m] = len(new_levels)
                new_levels.append(d.warmups[w])
    # levels no trial uses any more would be unidentified: compact them away
    used, compact = np.unique(wi, return_inverse=True)
    if used[0] != 0:  # keep the reference level first
        used = np.r_[0, used]
        compact = compact + 1
    return _relabel(d, compact.ravel(), np.asarray(new_levels)[used])


def _holm(p: np.ndarray) -> np.ndarray:
    order = np.argsort(p)
    m = len(p)
    adj = np.empty(m)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adj[i] = running
    return adj


def warmup_test(d: Design, cut: float, shared: Fit) -> WarmupTest:
    """The joint and per-batch tests (see the module docstring); `shared` is the free-mu fit
    of `d` with one shift per warmup level."""
    finite = np.isfinite(d.y)
    testable = {
        b
        for b in range(d.nb)
        if all(((d.bi == b) & (d.wi == w) & finite).sum() >= MIN_PER_LEVEL for w in range(d.nw))
    }
    none = fit_model(_relabel(d, np.zeros_like(d.wi), d.warmups[:1]), FREE, cut)
    pb_design = _per_batch_levels(d, testable)
    per_batch_fit = fit_model(pb_design, FREE, cut)
    ll_pb = max(per_batch_fit.loglik, shared.loglik)  # nested: never below `shared`
    joint_df = 2 * (pb_design.nw - 1)
    joint_stat = max(2 * (ll_pb - none.loglik), 0.0)
    shared_df = 2 * (d.nw - 1)
    shared_stat = max(2 * (shared.loglik - none.loglik), 0.0)
    rows = []
    for b in sorted(testable):
        dropped = _per_batch_levels(d, testable, drop=b)
        f = fit_model(dropped, FREE, cut, start=None)
        df = 2 * (pb_design.nw - dropped.nw)
        stat = max(2 * (ll_pb - f.loglik), 0.0)
        rows.append(
            {
                "batch_size": int(d.batches[b]),
                "stat": stat,
                "df": df,
                "p": float(chi2.sf(stat, df)) if df > 0 else 1.0,
            }
        )
    per_batch = pd.DataFrame(rows, columns=["batch_size", "stat", "df", "p"])
    if len(per_batch):
        per_batch["p_holm"] = _holm(per_batch["p"].to_numpy())
        per_batch["significant"] = per_batch["p_holm"] < LEVEL
    lik = Likelihood(d, FREE, cut)
    lay = lik.lay
    mu_idx = list(range(lay.dmu.start, lay.dmu.stop))
    f_idx = list(range(lay.df.start, lay.df.stop))
    return WarmupTest(
        reference=float(d.warmups[0]),
        levels=tuple(float(w) for w in d.warmups[1:]),
        shift_mu=tuple(float(shared.params[j]) for j in mu_idx),
        shift_mu_ci=tuple(
            profile_interval(lik, shared.params, shared.loglik, j, limit=2.0) for j in mu_idx
        ),
        shift_floor=tuple(float(shared.params[j]) for j in f_idx),
        shift_floor_ci=tuple(_floor_ci(lik, shared, j) for j in f_idx),
        joint_stat=joint_stat,
        joint_df=joint_df,
        joint_p=float(chi2.sf(joint_stat, joint_df)) if joint_df > 0 else 1.0,
        shared_stat=shared_stat,
        shared_p=float(chi2.sf(shared_stat, shared_df)) if shared_df > 0 else 1.0,
        per_batch=per_batch,
    )


def _floor_ci(lik: Likelihood, fit: Fit, j: int) -> tuple[float | None, float | None]:
    scale = float(np.exp(fit.globals[3]))  # one noise sd: the natural step for a floor
    return profile_interval(lik, fit.params, fit.loglik, j, step=scale / 2, limit=50 * scale)
