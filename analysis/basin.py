"""One likelihood model of every finished trial: the basin of the final metric in log10 lr.

For trial i at batch size B, log10 learning rate x, warmup level w (lower y is better; an
accuracy is negated before it gets here):

    y_i = F_B + df_w + c(d) * d**2 + noise,      d = x - (mu_B + dmu_w)
    c(d) = cL_B for d < 0 (towards small lrs), cR_B for d > 0 (towards divergence)
    log cL_B = a + g * z_B,  log cR_B = a + r + g * z_B,  log s_B = s0 + s1 * z_B

with z_B the standardised log batch size and noise ~ N(0, s_B**2): a floor per batch size, an
asymmetric parabola around the optimum mu_B, warmup shifting the optimum (dmu) and the floor
(df), curvatures and seed noise that may drift with B.

A loss curve is a parabola in log lr only near its optimum: far below it the loss saturates at
the untrained value, above it the loss explodes. So only the bottom of the basin is modelled:
a trial whose metric lies more than `cut` above the best value of its batch size is censored,
i.e. it contributes "worse than the cut" (P(y > T_B) under the model), not its value. A diverged
trial is censored the same way ("worse than anything finite nearby"): neither dropped nor
scored. The cut is the basin height at CUT_DECADES from the optimum (never below CUT_NOISE seed
noise standard deviations), found by iterating the fit (`fit_cut`). A run diverges only above
the optimum: a diverged trial above its batch size's best finite lr also adds
log Phi((x - mu_i) / EDGE_SOFTNESS), the optimum held below it (a divergence edge between the
two, profiled out, smoothed so that a rule whose optimum would lie beyond can still be fitted).

mu_B is free per batch size (`FREE`), or constrained by a rule (`mu_model`): a power law
mu_B = a + alpha * log10(B / B_ref) (alpha free, or fixed at 1, 0.5 or 0), or saturating
lr_max / (1 + B_noise / B). Everything is fitted jointly by maximum likelihood with analytic
gradients (scipy's L-BFGS-B); `analysis.profile` turns it into intervals and tests.

Numbers only; the words that explain them live in `analysis.verdict`.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field, replace

import numpy as np
from scipy.special import log_ndtr

CUT_DECADES = 1.0  # the basin is modelled as a parabola within about this many decades
CUT_NOISE = 4.0  # ...and at least this many seed-noise sds above the best value
LOG_C_BOUNDS = (-12.0, 12.0)  # log curvature per decade^2
LOG_S_BOUNDS = (-14.0, 6.0)  # log seed-noise sd
TREND_BOUNDS = (-2.0, 2.0)  # drift of log curvature / log noise per sd of log B
ASYM_BOUNDS = (-3.0, 3.0)  # log(cR / cL)
CUT_TOL = 1e-3  # the cut's fixed point, relative
FRESH_STEPS = 4  # steps of the cut's search that also try fresh starting values
MU_SLACK = 4.0  # decades beyond the lrs tried that a free optimum may lie
DMU_BOUNDS = (-2.0, 2.0)  # decades a warmup may move the optimum: beyond it the warmup's few
# trials would be fitted by an unrelated far-away basin (a ridge that traps the optimizer)
EDGE_SOFTNESS = 0.02  # decades: how sharply an optimum is held below a diverged lr
HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)
N_GLOBAL = 5  # a, g, r, s0, s1


@dataclass(frozen=True)
class Design:
    """The trials the model sees, as arrays (one entry per trial), and the levels they use."""

    batches: np.ndarray  # batch sizes (levels), ascending
    warmups: np.ndarray  # warmup levels (epochs), ascending; level 0 is the reference
    bi: np.ndarray  # batch level of every trial
    wi: np.ndarray  # warmup level of every trial
    x: np.ndarray  # log10 lr
    y: np.ndarray  # oriented final metric (lower is better); nan when diverged
    diverged: np.ndarray  # bool: no finite value (diverged, or never reached a target)
    trial: np.ndarray = field(default_factory=lambda: np.array([], dtype=object))

    @property
    def n(self) -> int:
        return len(self.x)

    @property
    def nb(self) -> int:
        return len(self.batches)

    @property
    def nw(self) -> int:
        return len(self.warmups)

    @property
    def log_b(self) -> np.ndarray:
        return np.log10(self.batches.astype(float))

    @property
    def z(self) -> np.ndarray:
        lb = self.log_b
        sd = float(lb.std())
        return (lb - lb.mean()) / sd if sd > 0 else np.zeros_like(lb)

    @property
    def y_min(self) -> np.ndarray:
        """Best finite value per batch level."""
        out = np.full(self.nb, np.inf)
        ok = np.isfinite(self.y)
        np.minimum.at(out, self.bi[ok], self.y[ok])
        return out

    @property
    def x_best(self) -> np.ndarray:
        """Log10 lr of the best finite trial per batch level (the first of equal ones); inf
        where a level has none."""
        out = np.full(self.nb, np.inf)
        y = np.where(np.isfinite(self.y), self.y, np.inf)
        for b in np.unique(self.bi[np.isfinite(y)]):
            on = np.flatnonzero(self.bi == b)
            out[b] = self.x[on[np.argmin(y[on])]]
        return out

    def subset(self, keep: np.ndarray) -> Design:
        """The trials where `keep` is true, with unused batch levels dropped."""
        used = np.unique(self.bi[keep])
        remap = np.full(self.nb, -1)
        remap[used] = np.arange(len(used))
        return replace(
            self,
            batches=self.batches[used],
            bi=remap[self.bi[keep]],
            wi=self.wi[keep],
            x=self.x[keep],
            y=self.y[keep],
            diverged=self.diverged[keep],
            trial=self.trial[keep] if len(self.trial) else self.trial,
        )

    def with_y(self, y: np.ndarray) -> Design:
        return replace(self, y=y)


# ----------------------------------------------------------------------------- mu models


@dataclass(frozen=True)
class MuModel:
    """How mu_B (log10 of the optimal lr at warmup level 0) depends on B.

    kind: `free` (one mu per batch size), `power` (a + alpha * (log10 B - ref)), `fixed`
    (power with alpha fixed at `alpha`), `saturating` (log10 lr_max - log10(1 + B_noise / B),
    parameters log10 lr_max and log10 B_noise), `curved` (a + b u + c u**2, u = log10 B - ref:
    a best lr that rises and then falls when c < 0)."""

    kind: str
    alpha: float | None = None  # for `fixed`
    ref: float = 0.0  # log10 B_ref of the power laws

    def k(self, nb: int) -> int:
        return {"free": nb, "power": 2, "fixed": 1, "saturating": 2, "curved": 3}[self.kind]

    def mu(self, phi: np.ndarray, log_b: np.ndarray) -> np.ndarray:
        if self.kind == "free":
            return phi
        if self.kind == "power":
            return phi[0] + phi[1] * (log_b - self.ref)
        if self.kind == "fixed":
            return phi[0] + self.alpha * (log_b - self.ref)
        if self.kind == "curved":
            u = log_b - self.ref
            return phi[0] + phi[1] * u + phi[2] * u * u
        return phi[0] - np.log10(1 + 10 ** (phi[1] - log_b))

    def jac(self, phi: np.ndarray, log_b: np.ndarray) -> np.ndarray:
        """d mu_B / d phi, shape (nb, k)."""
        nb = len(log_b)
        if self.kind == "free":
            return np.eye(nb)
        if self.kind == "power":
            return np.stack([np.ones(nb), log_b - self.ref], axis=1)
        if self.kind == "fixed":
            return np.ones((nb, 1))
        if self.kind == "curved":
            u = log_b - self.ref
            return np.stack([np.ones(nb), u, u * u], axis=1)
        r = 10 ** (phi[1] - log_b)
        return np.stack([np.ones(nb), -r / (1 + r)], axis=1)

    def start(self, mu_free: np.ndarray, log_b: np.ndarray) -> np.ndarray:
        """Starting values from per-batch optima."""
        if self.kind == "free":
            return mu_free.copy()
        if self.kind == "fixed":
            return np.array([np.mean(mu_free - self.alpha * (log_b - self.ref))])
        if len(log_b) < 2:
            return (
                np.array([mu_free[0], 1.0])
                if self.kind == "power"
                else np.array([mu_free[0] + 1, log_b[0]])
            )
        if self.kind == "curved":
            if len(log_b) < 3:
                return np.array([float(np.mean(mu_free)), 0.0, 0.0])
            return np.polyfit(log_b - self.ref, mu_free, 2)[::-1].copy()
        slope, icpt = np.polyfit(log_b - self.ref, mu_free, 1)
        if self.kind == "power":
            return np.array([icpt, slope])
        return np.array([float(mu_free.max()) + 0.3, float(np.median(log_b))])


FREE = MuModel("free")


def power(ref: float) -> MuModel:
    return MuModel("power", ref=ref)


def fixed(alpha: float, ref: float) -> MuModel:
    return MuModel("fixed", alpha=alpha, ref=ref)


SATURATING = MuModel("saturating")


# ----------------------------------------------------------------------------- likelihood


@dataclass(frozen=True)
class Layout:
    """Where each block sits in the parameter vector of one mu model."""

    k_mu: int
    nb: int
    nw: int

    @property
    def f(self) -> slice:
        return slice(self.k_mu, self.k_mu + self.nb)

    @property
    def g(self) -> slice:  # a, g, r, s0, s1
        s = self.k_mu + self.nb
        return slice(s, s + N_GLOBAL)

    @property
    def dmu(self) -> slice:
        s = self.k_mu + self.nb + N_GLOBAL
        return slice(s, s + self.nw - 1)

    @property
    def df(self) -> slice:
        s = self.k_mu + self.nb + N_GLOBAL + self.nw - 1
        return slice(s, s + self.nw - 1)

    @property
    def size(self) -> int:
        return self.k_mu + self.nb + N_GLOBAL + 2 * (self.nw - 1)


def censor_levels(design: Design, cut: float) -> np.ndarray:
    """The level above which each trial counts as censored ("worse than this").

    Finite trials: `cut` above the best value of the batch size. A trial with no finite value
    (diverged, or never reached a target): worse than its nearest finite neighbour on the side
    of the best trial (at most that same level). Divergence, like a target that is never
    reached, can be a cliff: the run fails although the run next to it is still good; "worse
    than the finite run next to it" holds then, while "worse than everything we model" would
    drag the optimum away from the cliff."""
    t = design.y_min[design.bi] + cut
    worse = np.flatnonzero(design.diverged)
    finite = np.isfinite(design.y)
    x_best = design.x_best
    for b in np.unique(design.bi[worse]):
        fb = np.flatnonzero(finite & (design.bi == b))
        order = fb[np.argsort(design.x[fb], kind="stable")]
        xs = design.x[order]
        for i in worse[design.bi[worse] == b]:
            if design.x[i] >= x_best[b]:
                k = int(np.searchsorted(xs, design.x[i], side="left")) - 1
            else:
                k = int(np.searchsorted(xs, design.x[i], side="right"))
            if 0 <= k < len(order):
                t[i] = min(t[i], design.y[order[k]])
    return t


class Likelihood:
    """The censored log-likelihood of a Design under one mu model, with its gradient."""

    def __init__(
        self, design: Design, model: MuModel, cut: float, noise_trend: bool = True
    ) -> None:
        self.d = design
        self.model = model
        self.cut = cut
        self.noise_trend = noise_trend  # False: the seed noise is the same at every B (s1 = 0)
        self.lay = Layout(model.k(design.nb), design.nb, design.nw)
        self.log_b = design.log_b
        self.z = design.z
        t = censor_levels(design, cut)
        self.cens = design.diverged | ~(design.y <= t)
        self.t = t
        self.y = np.where(self.cens, 0.0, design.y)
        # diverged above the best finite lr: the optimum is held below (module docstring)
        self.edge = np.flatnonzero(design.diverged & (design.x > design.x_best[design.bi]))
        self._cache: tuple[bytes, dict[str, np.ndarray]] | None = None

    @property
    def n_params(self) -> int:
        return self.lay.size

    def unpack(self, p: np.ndarray) -> dict[str, np.ndarray]:
        lay, d = self.lay, self.d
        g = p[lay.g]
        dmu = np.r_[0.0, p[lay.dmu]]
        df = np.r_[0.0, p[lay.df]]
        mu_b = self.model.mu(p[: lay.k_mu], self.log_b)
        return {
            "mu_b": mu_b,
            "f_b": p[lay.f],
            "log_cl_b": g[0] + g[1] * self.z,
            "log_cr_b": g[0] + g[2] + g[1] * self.z,
            "log_s_b": g[3] + g[4] * self.z,
            "dmu": dmu,
            "df": df,
            "mu_i": mu_b[d.bi] + dmu[d.wi],
        }

    def predict(self, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Predicted mean and noise sd of every trial."""
        u, d = self.unpack(p), self.d
        dx = d.x - u["mu_i"]
        left = dx < 0
        c = np.exp(np.where(left, u["log_cl_b"][d.bi], u["log_cr_b"][d.bi]))
        return u["f_b"][d.bi] + u["df"][d.wi] + c * dx * dx, np.exp(u["log_s_b"][d.bi])

    def _terms(self, p: np.ndarray) -> dict[str, np.ndarray]:
        """Per-trial pieces shared by the value, the gradient and the curvature (the last
        parameter vector's are kept: the optimizer asks for all three at the same point)."""
        key = p.tobytes()
        if self._cache is not None and self._cache[0] == key:
            return self._cache[1]
        out = self._compute_terms(p)
        self._cache = (key, out)
        return out

    def _compute_terms(self, p: np.ndarray) -> dict[str, np.ndarray]:
        d = self.d
        u = self.unpack(p)
        dx = d.x - u["mu_i"]
        left = dx < 0
        c = np.exp(np.where(left, u["log_cl_b"][d.bi], u["log_cr_b"][d.bi]))
        pred = u["f_b"][d.bi] + u["df"][d.wi] + c * dx * dx
        log_s = u["log_s_b"][d.bi]
        s = np.exp(log_s)
        cens = self.cens
        r = (self.y - pred) / s
        q = np.clip((self.t - pred) / s, -1e6, 1e6)
        log_sf = log_ndtr(-q)
        ll = np.where(cens, log_sf, -log_s - 0.5 * r * r - HALF_LOG_2PI)
        # the divergence edges, at their few trials: log Phi(e), e the margin in softness units
        e = dx[self.edge] / EDGE_SOFTNESS
        log_cdf = log_ndtr(e)
        ll[self.edge] += log_cdf
        lam = np.exp(np.minimum(-0.5 * e * e - HALF_LOG_2PI - log_cdf, 700.0))  # phi / Phi
        g_edge, w_edge = np.zeros(d.n), np.zeros(d.n)
        g_edge[self.edge] = -lam / EDGE_SOFTNESS  # d ll / d mu_i
        w_edge[self.edge] = lam * (lam + e) / EDGE_SOFTNESS**2  # its curvature on mu_i
        # inverse Mills ratio phi(q) / (1 - Phi(q)) of the censored trials
        mills = np.exp(np.minimum(-0.5 * q * q - HALF_LOG_2PI - log_sf, 700.0))
        return {
            "dx": dx,
            "left": left,
            "c": c,
            "s": s,
            "r": r,
            "q": q,
            "ll": ll,
            "mills": mills,
            "g_edge": g_edge,
            "w_edge": w_edge,
            "g_pred": np.where(cens, mills / s, r / s),  # d ll / d pred
            "g_logs": np.where(cens, mills * q, r * r - 1.0),  # d ll / d log s
        }

    def value_grad(self, p: np.ndarray) -> tuple[float, np.ndarray]:
        """Negative log-likelihood and its gradient."""
        d, lay = self.d, self.lay
        t = self._terms(p)
        g_pred, g_logs = t["g_pred"], t["g_logs"]
        g_mu_i = g_pred * (-2.0 * t["c"] * t["dx"]) + t["g_edge"]
        g_logc = g_pred * t["c"] * t["dx"] ** 2
        nb, nw = d.nb, d.nw
        grad = np.zeros(lay.size)
        g_mu_b = np.bincount(d.bi, weights=g_mu_i, minlength=nb)
        grad[: lay.k_mu] = self.model.jac(p[: lay.k_mu], self.log_b).T @ g_mu_b
        grad[lay.f] = np.bincount(d.bi, weights=g_pred, minlength=nb)
        zi = self.z[d.bi]
        gr = np.where(t["left"], 0.0, g_logc)
        grad[lay.g] = [
            g_logc.sum(),
            (g_logc * zi).sum(),
            gr.sum(),
            g_logs.sum(),
            (g_logs * zi).sum(),
        ]
        if nw > 1:
            grad[lay.dmu] = np.bincount(d.wi, weights=g_mu_i, minlength=nw)[1:]
            grad[lay.df] = np.bincount(d.wi, weights=g_pred, minlength=nw)[1:]
        return -float(t["ll"].sum()), -grad

    def fisher(self, p: np.ndarray, edges: bool = True) -> np.ndarray:
        """A positive semi-definite approximation of the Hessian of the negative
        log-likelihood (Fisher scoring / Gauss-Newton: exact information of the uncensored
        trials, the mean part of the censored ones), J' W J built block by block: the
        per-batch columns (mu, floor) through per-batch sums, so the cost is linear in the
        number of trials and batch sizes. `edges=False` leaves out the divergence edges'
        one-sided curvature: what the trials themselves tell about each optimum."""
        d, lay = self.d, self.lay
        t = self._terms(p)
        cens = self.cens
        lam, q, s = t["mills"], t["q"], t["s"]
        w = np.where(cens, np.maximum(lam * (lam - q), 0.0), 1.0) / (s * s)  # on pred
        ws = np.where(cens, np.maximum(lam * (lam - q), 0.0) * q * q, 2.0)  # on log s
        a = -2.0 * t["c"] * t["dx"]  # d pred / d mu_i
        # dense per-trial columns of pred: the shape's a, g, r, then warmup's dmu, df
        zi = self.z[d.bi]
        dlc = t["c"] * t["dx"] ** 2
        cols = [dlc, dlc * zi, np.where(t["left"], 0.0, dlc)]
        for lev in range(1, d.nw):
            on = d.wi == lev
            cols.append(np.where(on, a, 0.0))
        for lev in range(1, d.nw):
            cols.append((d.wi == lev).astype(float))
        g = np.stack(cols, axis=1)  # (n, m)
        gs = np.stack([np.ones(d.n), zi], axis=1)  # log s columns: s0, s1
        nb = d.nb

        def per_batch(v: np.ndarray) -> np.ndarray:
            return np.bincount(d.bi, weights=v, minlength=nb)

        s_mm, s_mf, s_ff = per_batch(w * a * a), per_batch(w * a), per_batch(w)
        s_mg = np.stack([per_batch(w * a * g[:, k]) for k in range(g.shape[1])], axis=1)
        s_fg = np.stack([per_batch(w * g[:, k]) for k in range(g.shape[1])], axis=1)
        jmu = self.model.jac(p[: lay.k_mu], self.log_b)  # (nb, k_mu)
        h = np.zeros((lay.size, lay.size))
        km, f = lay.k_mu, lay.f
        h[:km, :km] = jmu.T @ (jmu * s_mm[:, None])
        h[:km, f] = (jmu * s_mf[:, None]).T
        h[f, f] = np.diag(s_ff)
        # dense columns: positions of (a, g, r), dmu levels, df levels in the layout
        pos = [
            lay.g.start,
            lay.g.start + 1,
            lay.g.start + 2,
            *range(lay.dmu.start, lay.dmu.stop),
            *range(lay.df.start, lay.df.stop),
        ]
        h[:km, pos] = jmu.T @ s_mg
        h[f, pos] = s_fg
        h[np.ix_(pos, pos)] = (g * w[:, None]).T @ g
        spos = [lay.g.start + 3, lay.g.start + 4]
        h[np.ix_(spos, spos)] = (gs * ws[:, None]).T @ gs
        if edges and len(self.edge):  # the divergence edges' curvature on mu_i
            we = t["w_edge"]
            h[:km, :km] += jmu.T @ (jmu * per_batch(we)[:, None])
            for lev in range(1, d.nw):
                on = (d.wi == lev) * we
                j = lay.dmu.start + lev - 1
                h[:km, j] += jmu.T @ per_batch(on)
                h[j, j] += on.sum()
        upper = np.triu(h, 1)
        return np.triu(h) + upper.T

    def pred_jacobian(
        self, p: np.ndarray, bi: np.ndarray, wi: np.ndarray, x: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For hypothetical trials (batch level bi, warmup level wi, log10 lr x): the
        gradient of their predicted metric with respect to the parameters (n, n_params), the
        predicted rise above the floor and the noise sd. The design loop weighs where a next
        trial would teach the model most."""
        lay = self.lay
        u = self.unpack(p)
        dx = x - (u["mu_b"][bi] + u["dmu"][wi])
        left = dx < 0
        c = np.exp(np.where(left, u["log_cl_b"][bi], u["log_cr_b"][bi]))
        a = -2.0 * c * dx
        n = len(x)
        j = np.zeros((n, lay.size))
        j[:, : lay.k_mu] = a[:, None] * self.model.jac(p[: lay.k_mu], self.log_b)[bi]
        j[np.arange(n), lay.f.start + bi] = 1.0
        zi = self.z[bi]
        dlc = c * dx * dx
        g0 = lay.g.start
        j[:, g0] = dlc
        j[:, g0 + 1] = dlc * zi
        j[:, g0 + 2] = np.where(left, 0.0, dlc)
        on = wi > 0
        j[np.flatnonzero(on), lay.dmu.start + wi[on] - 1] = a[on]
        j[np.flatnonzero(on), lay.df.start + wi[on] - 1] = 1.0
        return j, dlc, np.exp(u["log_s_b"][bi])

    def residuals(self, p: np.ndarray) -> np.ndarray:
        """Standardised residual (y - predicted) / noise sd of every trial, NaN where
        censored."""
        t = self._terms(p)
        return np.where(self.cens, np.nan, t["r"])

    def loglik(self, p: np.ndarray) -> float:
        return -self.value_grad(p)[0]

    def bounds(self) -> list[tuple[float | None, float | None]]:
        lay = self.lay
        b: list[tuple[float | None, float | None]] = [(None, None)] * lay.size
        for j, bnd in zip(
            range(lay.g.start, lay.g.stop),
            (
                LOG_C_BOUNDS,
                TREND_BOUNDS,
                ASYM_BOUNDS,
                LOG_S_BOUNDS,
                TREND_BOUNDS if self.noise_trend else (0.0, 0.0),
            ),
            strict=True,
        ):
            b[j] = bnd
        for j in range(lay.dmu.start, lay.dmu.stop):
            b[j] = DMU_BOUNDS
        if self.model.kind == "saturating":
            lb = self.log_b
            b[1] = (float(lb.min()) - 4.0, float(lb.max()) + 4.0)  # log10 B_noise
        if self.model.kind == "free":  # an optimum far outside the lrs tried is no answer
            d = self.d
            for j in range(d.nb):
                xs = d.x[d.bi == j]
                b[j] = (float(xs.min()) - MU_SLACK, float(xs.max()) + MU_SLACK)
        return b


@dataclass(frozen=True)
class Fit:
    """A maximum-likelihood fit of one mu model."""

    model: MuModel
    layout: Layout
    params: np.ndarray
    loglik: float
    n_params: int  # free parameters (those not held fixed)
    n_obs: int
    cut: float
    converged: bool
    n_in_basin: int  # trials below the cut (not censored): those that measure the seed noise

    @property
    def resid_df(self) -> int:
        """Trials in the basins beyond the parameters: what is left to measure the noise."""
        return self.n_in_basin - self.n_params

    @property
    def globals(self) -> np.ndarray:
        """a, g, r, s0, s1."""
        return self.params[self.layout.g]

    @property
    def aicc(self) -> float:
        k, n = self.n_params, self.n_obs
        corr = 2 * k * (k + 1) / (n - k - 1) if n - k - 1 > 0 else math.inf
        return -2 * self.loglik + 2 * k + corr


def maximize(
    lik: Likelihood,
    start: np.ndarray,
    hold: dict[int, float] | None = None,
    max_iter: int = 300,
) -> tuple[np.ndarray, float, bool]:
    """Maximise the log-likelihood over every parameter not in `hold` (index -> value).

    Damped Fisher scoring (Levenberg-Marquardt on `Likelihood.fisher`), projected onto the
    bounds; converges in tens of iterations where a quasi-Newton method needs hundreds.
    Returns (params, log-likelihood, converged)."""
    hold = hold or {}
    free = np.array([j for j in range(lik.n_params) if j not in hold], dtype=int)
    lo = np.array([-np.inf if b[0] is None else b[0] for b in lik.bounds()])[free]
    hi = np.array([np.inf if b[1] is None else b[1] for b in lik.bounds()])[free]
    p = start.astype(float).copy()
    for j, v in hold.items():
        p[j] = v
    p[free] = np.clip(p[free], lo, hi)
    val, grad = lik.value_grad(p)
    if not math.isfinite(val):
        return p, -math.inf, False
    damp = 1e-3
    for _ in range(max_iter):
        g = grad[free]
        # parameters held at a bound by the gradient stay put this iteration (active set)
        move = ~(((p[free] <= lo) & (g > 0)) | ((p[free] >= hi) & (g < 0)))
        h = lik.fisher(p)[np.ix_(free, free)][np.ix_(move, move)]
        diag = np.maximum(np.diag(h), 1e-12)
        improved = False
        while damp < 1e12:
            try:
                step = np.zeros(len(free))
                step[move] = np.linalg.solve(h + damp * np.diag(diag), -g[move])
            except np.linalg.LinAlgError:
                damp *= 10
                continue
            cand = p.copy()
            cand[free] = np.clip(p[free] + step, lo, hi)
            new_val, new_grad = lik.value_grad(cand)
            if math.isfinite(new_val) and new_val <= val:
                gain = val - new_val
                p, val, grad = cand, new_val, new_grad
                damp = max(damp / 5, 1e-9)
                improved = True
                break
            damp *= 5
        if not improved:
            break
        if gain <= 1e-10 * (1 + abs(val)):
            # converged when the predicted further gain is negligible as well
            pred_gain = float(-g @ step)
            if pred_gain < 1e-8:
                return p, -val, True
    g = grad[free]
    at_bound = ((p[free] <= lo + 1e-12) & (g > 0)) | ((p[free] >= hi - 1e-12) & (g < 0))
    ok = bool(np.max(np.abs(np.where(at_bound, 0.0, g)), initial=0.0) < 1e-3)
    return p, -val, ok


# ----------------------------------------------------------------------------- starting values


def start_free(design: Design, cut: float, decades: float = CUT_DECADES) -> np.ndarray:
    """Rough per-batch optima, floors, curvatures and noise for the free model (`decades`: the
    basin window the cut was set for)."""
    nb, nw = design.nb, design.nw
    mu = np.zeros(nb)
    f = np.zeros(nb)
    curv, resid = [], []
    for b in range(nb):
        m = (design.bi == b) & np.isfinite(design.y)
        x, y = design.x[m], design.y[m]
        j = int(np.argmin(y))
        mu[b], f[b] = x[j], y[j]
        near = y <= y[j] + cut
        if near.sum() >= 3 and np.ptp(x[near]) > 0:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", np.exceptions.RankWarning)
                a2, a1, a0 = np.polyfit(x[near] - x[j], y[near], 2)
            if a2 > 0:
                v = float(np.clip(-a1 / (2 * a2), -0.5, 0.5))
                mu[b] = x[j] + v
                f[b] = a0 - a1 * a1 / (4 * a2)
                curv.append(a2)
                resid.append(np.std(y[near] - np.polyval([a2, a1, a0], x[near] - x[j])))
    c0 = float(np.median(curv)) if curv else max(cut, 1e-6) / decades**2
    s = float(np.median(resid)) if resid else max(cut, 1e-6) / 10
    s = max(s, 1e-6 * max(abs(float(np.nanmedian(design.y))), 1.0), 1e-12)
    g = [math.log(max(c0, 1e-12)), 0.0, 0.0, math.log(s), 0.0]
    return np.r_[mu, f, g, np.zeros(2 * (nw - 1))]


def convert(p_free: np.ndarray, design: Design, model: MuModel) -> np.ndarray:
    """Starting vector of `model` from a free-model parameter vector."""
    nb = design.nb
    mu_free = p_free[:nb]
    rest = p_free[nb:]
    return np.r_[model.start(mu_free, design.log_b), rest]


def fit_model(
    design: Design,
    model: MuModel,
    cut: float,
    start: np.ndarray | None = None,
    hold: dict[int, float] | None = None,
) -> Fit:
    """The maximum-likelihood fit of `model` (start: a vector of this model, or of FREE)."""
    lik = Likelihood(design, model, cut)
    if start is None:
        start = start_free(design, cut)
        if model.kind != "free":
            start = convert(start, design, model)
    elif len(start) != lik.n_params:
        start = convert(start, design, model)
    params, ll, ok = maximize(lik, start, hold)
    n_free = lik.n_params - len(hold or {})
    return Fit(model, lik.lay, params, ll, n_free, design.n, cut, ok, int((~lik.cens).sum()))


def fit_best(design: Design, model: MuModel, cut: float, starts: list[np.ndarray]) -> Fit:
    """The best of the fits of `model` from several starting vectors.

    The likelihood can have more than one maximum: with few trials near the bottom of a basin,
    a free optimum far outside the lrs tried, or a rule whose misfit is absorbed by the basin's
    shape (curvature and noise drifting with B), can each be a local maximum. A model that
    nests another is therefore also started from the nested model's fit, so that it never ends
    below it."""
    fits = [fit_model(design, model, cut, start=s) for s in starts]
    return max(fits, key=lambda f: f.loglik if math.isfinite(f.loglik) else -math.inf)


def restrict(params: np.ndarray, design: Design, keep: np.ndarray) -> np.ndarray:
    """A free-model parameter vector of `design` cut down to `design.subset(keep)`."""
    used = np.unique(design.bi[keep])
    nb = design.nb
    return np.r_[params[:nb][used], params[nb : 2 * nb][used], params[2 * nb :]]


def fit_cut(
    design: Design, iterations: int = 15, decades: float = CUT_DECADES
) -> tuple[float, Fit]:
    """The censoring cut and the free model's fit at it.

    The cut is the basin height `decades` (CUT_DECADES) away from the optimum on its flatter
    side (at the median batch size), but at least CUT_NOISE seed-noise sds. It is found by a damped
    fixed-point iteration (the geometric mean of the cut and the one the fit implies): an
    undamped one can oscillate between two fits for ever. In the first FRESH_STEPS steps the
    free model is fitted from the previous solution and from fresh starting values, and the
    better is kept (the likelihood of a noisy sweep has several maxima; see `fit_best`); after
    them the cut moves little and the previous solution is the start."""
    finite = np.isfinite(design.y)
    span = max(float(np.ptp(design.y[finite])) if finite.any() else 1.0, 1e-12)
    rough = start_free(design, span / 2, decades)
    g0 = rough[2 * design.nb : 2 * design.nb + N_GLOBAL]
    cut = float(np.clip(_cut(g0, decades), 1e-9, span))
    fit = fit_model(design, FREE, cut, start=start_free(design, cut, decades))
    for k in range(iterations):
        new = cut_from(fit, decades)
        if abs(math.log(new / cut)) < CUT_TOL:
            break
        cut = math.sqrt(cut * new)
        fit = (
            _best_of(design, cut, fit.params, decades)
            if k < FRESH_STEPS
            else fit_model(design, FREE, cut, start=fit.params)
        )
    return cut, fit


def _best_of(design: Design, cut: float, previous: np.ndarray, decades: float) -> Fit:
    """The free fit at `cut` from the previous solution and from fresh starting values."""
    return fit_best(design, FREE, cut, [previous, start_free(design, cut, decades)])


def cut_from(fit: Fit, decades: float = CUT_DECADES) -> float:
    """`decades` of basin on the flatter side, or CUT_NOISE noise sds if more."""
    return _cut(fit.globals, decades)


def _cut(g: np.ndarray, decades: float = CUT_DECADES) -> float:
    c = math.exp(g[0] + min(g[2], 0.0))
    s = math.exp(g[3])
    return max(c * decades**2, CUT_NOISE * s)
