"""Everything the verdict needs, from one likelihood model of all trials (`analysis.basin`).

`infer(trials, metric)` fits the basin model to every finished trial and returns `Inference`:

- the best lr of every batch size (mu_B of the free model) with its profile-likelihood
  interval, calibrated on the sweep's own design; `at_edge` when the data bound it on one side
  only (the best tried lr is the smallest or largest finite one, or the interval is open);
- the rules for mu(B), fitted to the trials of the batch sizes whose optimum is bracketed:
  `power` (free alpha), `linear` (alpha = 1), `sqrt` (0.5), `constant` (0), `saturating`
  lr_max / (1 + B_noise / B) and `curved` (log-quadratic: a best lr that rises then falls),
  compared by AICc on the trials' likelihood;
- alpha with its profile-likelihood interval, widened when simulation on the design shows
  under-coverage (`analysis.profile.calibrate_*`), and to take in the fit with the same seed
  noise at every B when the fitted noise drifts steeply with B (STEEP_NOISE_TREND); B_noise
  with its interval;
- the joint test of warmup (`analysis.warmup_test`).

Numbers only: `analysis.decision` turns them into a verdict, `analysis.verdict` into words.

    inf = infer(results.trials, "val_loss", replicates=200)
    inf.alpha, inf.alpha_ci, inf.table
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
from scipy.stats import chi2

from analysis import basin
from analysis.basin import FREE, SATURATING, Design, Fit, Likelihood, MuModel, fit_model
from analysis.load import NOT_REACHED_METRICS
from analysis.profile import (
    CHI2_1_95,
    Calibration,
    calibration_from,
    lr_statistics,
    profile_interval,
)

ALPHA_MAX = 3.0  # |alpha| beyond this is a degenerate fit of the power law, not a scaling rule
MIN_POINTS = 3  # batch sizes with a located optimum needed to fit and compare rules
RULES = ("linear", "sqrt", "constant", "power", "saturating", "curved")
FIXED_ALPHA = {"linear": 1.0, "sqrt": 0.5, "constant": 0.0}
MU_LIMIT_DECADES = 1.0  # a per-batch interval open this far beyond the tried lrs is unbounded
BRACKET_MIN_DECADES = 0.1  # a finite worse trial nearer the best than this brackets it loosely
BRACKET_MAX_DECADES = 1.0  # so does any trial farther than this (a factor-10 grid is firm)
NOISE_TREND = 4  # the seed noise's drift with log B in Fit.globals (a, g, r, s0, s1)
STEEP_NOISE_TREND = 1.0  # a seed-noise drift this steep (log sd per sd of log B; 1.0 is 11x
# between the ends of B = 4..64) is checked: alpha's interval becomes the union of the fitted
# one and the one with the noise the same at every B. A fit can explain its misfit by giving
# the batch sizes at one end all the noise and those at the other almost none (the exact
# quadratic problem, B = 4..64: noise sds 0.12 and 0.001 where both are 0.008, alpha 0.73
# [0.70, 0.76] where the truth is 0.985; or 0.0005 at B = 4, alpha 1.03 [1.02, 1.05])

PIN_PHASE = "pin"  # trials the design loop places near each optimum once the verdict is decided
LOCAL_DECADES = 0.5  # the per-batch table's basin window where a pinned batch size's trials are
LOCAL_NEAR = 0.25  # dense near its optimum: at least LOCAL_MIN trials (finite or diverged)
LOCAL_MIN = 6  # within LOCAL_NEAR decades of it (`_bottoms`)
SCATTER_MIN_DF = 2  # trials in a basin beyond its optimum and floor to judge its scatter

TABLE_COLUMNS = [
    "batch_size",
    "lr",
    "lr_ci_lo",
    "lr_ci_hi",
    "at_edge",
    "edge_side",
    "in_fit",
    "n_trials",
    "n_diverged",
    "n_not_reached",
    "n_feasible",
    "n_lrs",
    "metric_best",
    "lr_best_tried",
    "metric_best_tried",
    "lr_div",
    "lr_feasible_max",
    "floor",
    "curv_left",
    "curv_right",
    "noise_sd",
    "fit",
    "mu_model",
]


@dataclass(frozen=True)
class RuleFit:
    """One rule for mu(B), fitted by maximum likelihood."""

    name: str
    loglik: float
    k: int  # parameters of the whole model (rule, floors, shape, noise, warmup)
    aicc: float
    mu_params: tuple[float, ...]  # the rule's own parameters (see basin.MuModel)
    converged: bool


@dataclass(frozen=True)
class Inference:
    """The fitted model's answers, all in log10 lr unless a name says otherwise."""

    metric: str
    maximize: bool
    log_scale: bool  # the model was fitted to log10 of the metric (steps to target)
    table: pd.DataFrame  # one row per batch size (TABLE_COLUMNS)
    n_model_trials: int  # finished trials the model saw (bracketed batch sizes)
    cut: float | None  # censoring level above each batch size's best value
    ref_log_b: float | None  # log10 B_ref of the power laws
    rules: dict[str, RuleFit] = field(default_factory=dict)
    alpha: float | None = None
    alpha_ci: tuple[float | None, float | None] = (None, None)  # calibrated 95% (see _alpha)
    alpha_ci_chi2: tuple[float | None, float | None] = (None, None)  # uncalibrated
    alpha_cal: Calibration | None = None
    alpha_ci_same_noise: tuple[float | None, float | None] | None = None  # the interval with
    # the same seed noise at every B, when the fitted noise drifts steeply (else None)
    noise_drift: float | None = None  # the fitted seed noise's ratio, largest to smallest B
    mu_cal: Calibration | None = None  # per-batch intervals' calibration
    lr_max: float | None = None
    b_noise: float | None = None
    b_noise_ci: tuple[float | None, float | None] = (None, None)
    peak_b: float | None = None  # `curved`: the batch size where the best lr peaks
    warmup: object | None = None  # analysis.warmup_test.WarmupTest
    power_fit: Fit | None = field(default=None, repr=False)  # the power law's full fit
    power_design: Design | None = field(default=None, repr=False)  # ... and its trials
    basin_width: float | None = None  # decades from the optimum where the metric rises
    # by one noise sd (median batch size): how flat the basin is
    resid_df: int | None = None  # the free model's Fit.resid_df (batch sizes in the rule fits)

    @property
    def n_points(self) -> int:
        return int(self.table["in_fit"].sum()) if len(self.table) else 0

    @property
    def batch_range(self) -> tuple[int, int] | None:
        fit = self.table[self.table["in_fit"]]
        if fit.empty:
            return None
        return int(fit["batch_size"].min()), int(fit["batch_size"].max())

    @property
    def min_batch(self) -> int | None:
        return int(self.table["batch_size"].min()) if len(self.table) else None

    def aicc_delta(self) -> dict[str, float]:
        """AICc of every rule minus the best one."""
        if not self.rules:
            return {}
        best = min(r.aicc for r in self.rules.values())
        return {m: r.aicc - best for m, r in self.rules.items()}

    @property
    def best_model(self) -> str | None:
        d = self.aicc_delta()
        return min(d, key=d.__getitem__) if d else None

    def rule_mu(self, name: str, batch: float | np.ndarray) -> np.ndarray | float | None:
        """log10 of the best lr that a fitted rule predicts at batch size(s) `batch`."""
        r = self.rules.get(name)
        if r is None or self.ref_log_b is None:
            return None
        lb = np.log10(np.asarray(batch, dtype=float))
        p = np.asarray(r.mu_params)
        return _mu_model(name, self.ref_log_b).mu(p, lb)

    def curve(self, row: pd.Series, lrs: np.ndarray) -> np.ndarray:
        """The fitted basin of one batch size (a row of `table`) at lrs, in metric units, at
        the reference warmup; nan outside the modelled bottom of the basin (the cut)."""
        lrs = np.asarray(lrs, dtype=float)
        if row.get("mu_model") is None or pd.isna(row.get("mu_model")) or self.cut is None:
            return np.full(lrs.shape, np.nan)
        d = np.log10(lrs) - float(row["mu_model"])
        c = np.where(d < 0, float(row["curv_left"]), float(row["curv_right"]))
        rise = np.where(c * d * d <= self.cut, c * d * d, np.nan)
        floor = float(row["floor"])
        if self.log_scale:
            return 10 ** (math.log10(floor) + rise)
        return floor - rise if self.maximize else floor + rise

    def lr_at(self, name: str, batch: float) -> float | None:
        """The lr a fitted rule predicts at `batch` (None: no fit, or beyond floating point,
        which only a degenerate fit predicts)."""
        mu = self.rule_mu(name, batch)
        if mu is None or not abs(float(mu)) < 300:
            return None
        return float(10 ** float(mu))


def _mu_model(name: str, ref: float) -> MuModel:
    if name in FIXED_ALPHA:
        return basin.fixed(FIXED_ALPHA[name], ref)
    if name == "power":
        return basin.power(ref)
    if name == "curved":
        return MuModel("curved", ref=ref)
    return SATURATING


# ----------------------------------------------------------------------------- design


def oriented(trials: pd.DataFrame, metric: str, maximize: bool) -> tuple[pd.DataFrame, bool]:
    """Finished trials, in one order (`canonical`), with column `_y` (lower is better, nan =
    worse than anything finite) and `_worse` (diverged, or never reached the target); steps are
    modelled in log10."""
    fin = trials[trials["status"].isin(("done", "diverged"))].copy()
    v = pd.to_numeric(fin[metric], errors="coerce").to_numpy(dtype=float)
    log_scale = metric in NOT_REACHED_METRICS
    if log_scale:
        with np.errstate(divide="ignore", invalid="ignore"):
            v = np.where(v > 0, np.log10(v), np.nan)
        worse = ~np.isfinite(v)  # a trial that reached the target before diverging counts
    else:
        worse = (fin["status"].to_numpy() == "diverged") | ~np.isfinite(v)
    fin["_y"] = np.where(worse, np.nan, -v if maximize else v)
    fin["_worse"] = worse
    return canonical(fin), log_scale


ORDER = ("batch_size", "warmup_epochs", "lr", "seed", "trial")


def canonical(fin: pd.DataFrame) -> pd.DataFrame:
    """The trials in one order, whatever order they came in. The fit's answer can depend on
    it: the censoring cut is a fixed point of an iteration, and rounding in the sums can tip
    it into another one (seen on a default sweep's 86 trials: `neither` read in the order the
    design loop saw them, `inconclusive` in the results folder's order; the loop had stopped
    on a verdict its own report did not give)."""
    cols = [c for c in ORDER if c in fin.columns]
    return fin.sort_values(cols, kind="mergesort").reset_index(drop=True) if cols else fin


def _design(fin: pd.DataFrame) -> Design:
    batch = fin["batch_size"].to_numpy(dtype=int)
    batches, bi = np.unique(batch, return_inverse=True)
    warm = np.round(fin["warmup_epochs"].to_numpy(dtype=float), 6)
    warmups, wi = np.unique(warm, return_inverse=True)
    return Design(
        batches=batches,
        warmups=warmups,
        bi=bi.ravel(),
        wi=wi.ravel(),
        x=np.log10(fin["lr"].to_numpy(dtype=float)),
        y=fin["_y"].to_numpy(dtype=float),
        diverged=fin["_worse"].to_numpy(dtype=bool),
        trial=fin["trial"].to_numpy() if "trial" in fin.columns else np.array([]),
    )


def _counts(group: pd.DataFrame, metric: str) -> dict:
    finite = np.isfinite(group["_y"].to_numpy())
    diverged = int((group["status"] == "diverged").sum())
    feas = group[finite]
    return {
        "batch_size": int(group["batch_size"].iloc[0]),
        "n_trials": len(group),
        "n_diverged": diverged,
        "n_not_reached": int((~finite).sum()) - diverged if metric in NOT_REACHED_METRICS else 0,
        "n_feasible": int(finite.sum()),
        "n_lrs": int(np.unique(np.round(np.log10(feas["lr"].to_numpy(dtype=float)), 6)).size),
        "lr_feasible_max": float(feas["lr"].max()) if len(feas) else None,
    }


def _bracket(
    group: pd.DataFrame,
) -> tuple[bool, str | None, float | None, float | None, str | None]:
    """(bracketed, edge side, best tried lr, its value, loose side): is the best finite trial
    flanked by worse trials (finite, or diverged / never reached) on both sides in lr? The
    loose side(s) ("low", "high", "both", None) are those flanked only by a trial too far
    (beyond BRACKET_MAX_DECADES) or, finite, too near (within BRACKET_MIN_DECADES: worse by
    noise alone) to say where the basin turns, or not at all. The model may still place such
    an optimum, from the basin shape the other batch sizes share; the design loop brackets it
    firmly first (seen on the default sweep: a batch size tried at lr 0.004, twice 0.01 decade
    apart, and diverged at 1.5 counted as bracketed, its optimum placed at 0.006 where trials
    above found it near 0.1)."""
    y = group["_y"].to_numpy(dtype=float)
    x = np.log10(group["lr"].to_numpy(dtype=float))
    finite = np.isfinite(y)
    if not finite.any():
        return False, "high", None, None, "both"
    j = int(np.nanargmin(np.where(finite, y, np.inf)))
    d = x - x[j]
    other = np.abs(d) > 1e-9
    below = (other & (d < 0)).any()
    above = (other & (d > 0)).any()
    side = None if below and above else ("low" if not below and above else "high")
    if not below and not above:
        side = "both"
    firm = (
        other
        & (np.abs(d) <= BRACKET_MAX_DECADES + 1e-9)
        & (~finite | (np.abs(d) >= BRACKET_MIN_DECADES - 1e-9))
    )
    firm_below, firm_above = (firm & (d < 0)).any(), (firm & (d > 0)).any()
    loose = None if firm_below and firm_above else "both"
    if firm_below != firm_above:
        loose = "high" if firm_below else "low"
    return side is None, side, float(10 ** x[j]), float(y[j]), loose


# ----------------------------------------------------------------------------- fitting


def infer(
    trials: pd.DataFrame,
    metric: str = "val_loss",
    maximize: bool = False,
    replicates: int = 200,
    seed: int = 0,
    constant: bool = True,
    warmup: bool = True,
    level: float = 0.95,
    quick: bool = False,
    bottoms: bool = True,
) -> Inference:
    """Fit the basin model and the rules (see the module docstring). `level`: the confidence
    of alpha's interval (the sweep's stopping rule asks for more than the report's 95%).
    `quick` (the design loop's look after every trial): no per-batch or B_noise intervals, a
    batch size counts as located when its best tried lr is flanked by worse ones. `bottoms`:
    the pinned batch sizes' rows from the bottom-of-basin fit (`_bottoms`; the design loop's
    looks, which judge the verdict's fit, go without)."""
    fin, log_scale = oriented(trials, metric, maximize)
    rows, brackets = [], {}
    for b, group in fin.groupby("batch_size", sort=True):
        rows.append(_counts(group, metric))
        brackets[int(b)] = _bracket(group)
    table = (
        pd.DataFrame.from_records(rows, columns=TABLE_COLUMNS)
        if rows
        else pd.DataFrame(columns=TABLE_COLUMNS)
    )
    if table.empty:
        return Inference(metric, maximize, log_scale, table, 0, None, None)
    sign = -1.0 if maximize else 1.0
    table["in_fit"] = [brackets[int(b)][0] for b in table["batch_size"]]
    table["edge_side"] = [brackets[int(b)][1] for b in table["batch_size"]]
    table["lr_best_tried"] = [brackets[int(b)][2] for b in table["batch_size"]]
    table["loose_side"] = [brackets[int(b)][4] for b in table["batch_size"]]
    table["metric_best_tried"] = [
        _unorient(brackets[int(b)][3], sign, log_scale) for b in table["batch_size"]
    ]
    table["lr_div"] = [
        _div_edge(fin[fin["batch_size"] == b], brackets[int(b)][2]) for b in table["batch_size"]
    ]
    model_fin = _modelled(fin)
    rng = np.random.default_rng(seed)
    if model_fin.empty or np.isfinite(model_fin["_y"]).sum() < 3:
        return _edges_only(table, metric, maximize, log_scale)
    every = _design(model_fin)
    pin = _pins(model_fin)
    design = every.subset(~pin) if pin.any() else every
    cut, free = basin.fit_cut(design)
    base = table
    table = _per_batch(base, design, free, cut, sign, log_scale, rng, replicates, quick)
    if bottoms:
        table = _bottoms(table, base, every, pin, sign, log_scale, rng, replicates, quick)
    in_fit_b = set(table.loc[table["in_fit"], "batch_size"].astype(int))
    keep = np.isin(design.batches[design.bi], list(in_fit_b))
    out = dict(metric=metric, maximize=maximize, log_scale=log_scale, table=table, cut=cut)
    if len(in_fit_b) < MIN_POINTS:
        return Inference(
            **out, n_model_trials=int(keep.sum()), ref_log_b=None, basin_width=_width(free)
        )
    sub = design.subset(keep)
    sub_free = basin.fit_best(
        sub, FREE, cut, [basin.restrict(free.params, design, keep), basin.start_free(sub, cut)]
    )
    ref = float(sub.log_b.mean())
    rules = _fit_rules(sub, cut, sub_free, ref, constant)
    power_fit = rules.pop("_power_fit")
    sat_fit = rules.pop("_saturating_fit")
    alpha, ci_chi2, ci, cal, ci_same = _alpha(sub, cut, power_fit, ref, rng, replicates, level)
    b_noise, b_ci, lr_max = _b_noise(sub, cut, sat_fit, quick)
    peak = None
    if "curved" in rules:
        a, b1, c2 = rules["curved"].mu_params
        if c2 < 0 and abs(b1 / (2 * c2)) < 6:
            peak = float(10 ** (ref - b1 / (2 * c2)))
    wt = None
    if warmup and sub.nw > 1:
        from analysis.warmup_test import warmup_test

        wt = warmup_test(sub, cut, sub_free)
    return Inference(
        **out,
        n_model_trials=sub.n,
        ref_log_b=ref,
        rules={k: v for k, v in rules.items() if k in RULES},
        alpha=alpha,
        alpha_ci=ci,
        alpha_ci_chi2=ci_chi2,
        alpha_cal=cal,
        alpha_ci_same_noise=ci_same,
        noise_drift=_noise_drift(power_fit, sub),
        mu_cal=table.attrs.get("mu_cal"),
        lr_max=lr_max,
        b_noise=b_noise,
        b_noise_ci=b_ci,
        peak_b=peak,
        warmup=wt,
        power_fit=power_fit,
        power_design=sub,
        basin_width=_width(free),
        resid_df=sub_free.resid_df,
    )


def _modelled(fin: pd.DataFrame) -> pd.DataFrame:
    """The trials of batch sizes with at least one finite result: those the model sees."""
    has_finite = fin.groupby("batch_size")["_y"].transform(lambda s: np.isfinite(s).any())
    return fin[has_finite.astype(bool)]


def refit_bottoms(inf: Inference, trials: pd.DataFrame) -> Inference:
    """`inf`, a quick look, with its bottom-of-basin columns (`mu_local`, `n_near`; `_bottoms`)
    refitted on `trials`: the design loop's refit after each pin trial. Only for `trials` that
    add nothing but pin trials to those `inf` was fitted on: the verdict's fit leaves the pin
    trials out and would come out the same, so only the bottom-of-basin fit is redone (0.2 s
    of a quick look's 0.74 s on 83 trials of the exact problem, 2-core VM)."""
    fin, log_scale = oriented(trials, inf.metric, inf.maximize)
    model_fin = _modelled(fin)
    if inf.table.empty or np.isfinite(model_fin["_y"]).sum() < 3:
        return inf
    sign = -1.0 if inf.maximize else 1.0
    table = _bottoms(
        inf.table,
        inf.table,
        _design(model_fin),
        _pins(model_fin),
        sign,
        log_scale,
        np.random.default_rng(0),
        replicates=0,
        quick=True,
    )
    return replace(inf, table=table)


def _unorient(v: float | None, sign: float, log_scale: bool) -> float | None:
    if v is None or not math.isfinite(v):
        return None
    v = sign * v
    return float(10**v) if log_scale else float(v)


def _div_edge(group: pd.DataFrame, lr_best: float | None) -> float | None:
    """Smallest lr above the best one at which a trial diverged (None: none did)."""
    div = group[group["status"] == "diverged"]
    above = div.loc[div["lr"] > (lr_best or 0.0), "lr"]
    return float(above.min()) if len(above) else None


def _edges_only(table: pd.DataFrame, metric: str, maximize: bool, log_scale: bool) -> Inference:
    """No model could be fitted (too few finite trials): best tried lrs as bounds."""
    table = table.copy()
    table["lr"] = table["lr_best_tried"]
    table["at_edge"] = True
    table["in_fit"] = False
    table["fit"] = np.where(table["lr"].isna(), "none", "argmin")
    return Inference(metric, maximize, log_scale, table, 0, None, None)


def _width(fit: Fit) -> float:
    """Decades from the optimum at which the basin rises by one noise sd (flatter side)."""
    a, r, s0 = (float(fit.globals[k]) for k in (0, 2, 3))
    c = math.exp(a + min(r, 0.0))
    return math.sqrt(math.exp(s0) / c)


MODEL_COLUMNS = (  # the per-batch table's columns that come from a fit (`_per_batch`)
    "lr",
    "lr_ci_lo",
    "lr_ci_hi",
    "floor",
    "curv_left",
    "curv_right",
    "noise_sd",
    "metric_best",
    "mu_model",
    "scatter",
)
PER_BATCH_COLUMNS = (*MODEL_COLUMNS, "fit", "at_edge", "edge_side")  # all `_per_batch` sets


def _per_batch(
    table: pd.DataFrame,
    design: Design,
    free: Fit,
    cut: float,
    sign: float,
    log_scale: bool,
    rng: np.random.Generator,
    replicates: int,
    quick: bool = False,
) -> pd.DataFrame:
    """mu_B with calibrated profile intervals, floors, shapes; the edge flags."""
    lik = Likelihood(design, FREE, cut)
    u = lik.unpack(free.params)
    nb = design.nb
    mu_cal = None
    if replicates > 0:
        stats, failed = lr_statistics(
            design, FREE, cut, free.params, list(range(nb)), max(replicates // 4, 20), rng
        )
        mu_cal = calibration_from(stats, failed)
    thr = mu_cal.threshold if mu_cal else CHI2_1_95
    scatter = _scatter(lik, free.params)
    table = table.copy()
    table.attrs["mu_cal"] = mu_cal
    pos = {int(b): i for i, b in enumerate(design.batches)}
    for col in MODEL_COLUMNS:
        table[col] = None
    table["fit"] = "none"
    at_edge = []
    for i, row in table.iterrows():
        b = int(row["batch_size"])
        if b not in pos:  # no finite trial at all
            at_edge.append(True)
            continue
        j = pos[b]
        xs = design.x[design.bi == j]
        limit = max(float(xs.max()) - free.params[j], free.params[j] - float(xs.min()))
        lo = hi = None
        if not quick:
            lo, hi = profile_interval(
                lik,
                free.params,
                free.loglik,
                j,
                threshold=thr * max(1.0, float(scatter[j])),
                limit=limit + MU_LIMIT_DECADES,
            )
        mu = float(free.params[j])
        bracketed = bool(row["in_fit"])
        table.at[i, "floor"] = _unorient(float(u["f_b"][j]), sign, log_scale)
        table.at[i, "metric_best"] = table.at[i, "floor"]
        table.at[i, "curv_left"] = float(math.exp(u["log_cl_b"][j]))
        table.at[i, "curv_right"] = float(math.exp(u["log_cr_b"][j]))
        table.at[i, "noise_sd"] = float(math.exp(u["log_s_b"][j]))
        table.at[i, "mu_model"] = mu
        table.at[i, "scatter"] = float(scatter[j])
        if bracketed:
            table.at[i, "lr"] = 10**mu
            table.at[i, "lr_ci_lo"] = None if lo is None else 10**lo
            table.at[i, "lr_ci_hi"] = None if hi is None else 10**hi
            table.at[i, "fit"] = "model"
            at_edge.append(not quick and (lo is None or hi is None))
            if not quick and (lo is None or hi is None):
                table.at[i, "edge_side"] = "low" if lo is None else "high"
        else:
            # only bounded on one side: the best tried lr is the bound, never a point
            best = row["lr_best_tried"]
            table.at[i, "lr"] = best
            side = row["edge_side"]
            table.at[i, "lr_ci_lo"] = best if side == "high" else None
            table.at[i, "lr_ci_hi"] = best if side == "low" else None
            table.at[i, "fit"] = "argmin"
            at_edge.append(True)
    table["at_edge"] = at_edge
    return table


def _scatter(lik: Likelihood, params: np.ndarray) -> np.ndarray:
    """Per batch level: the mean squared standardised residual of its trials in the basin
    (degrees of freedom: those trials less its optimum and floor), 1 where fewer than
    SCATTER_MIN_DF remain. Above 1 the trials scatter around the fitted basin more than the
    fitted seed noise allows (the basin's shape or the noise differs at this batch size from
    what the shared shape and noise trend give it): its interval's threshold is multiplied by
    it (the Birge ratio's square; never narrowed), as the calibration, which simulates from
    the fitted model, cannot see this misfit."""
    r = lik.residuals(params)
    inside = np.isfinite(r)
    bi = lik.d.bi[inside]
    n = np.bincount(bi, minlength=lik.d.nb)
    ss = np.bincount(bi, weights=r[inside] ** 2, minlength=lik.d.nb)
    df = n - 2
    return np.where(df >= SCATTER_MIN_DF, ss / np.maximum(df, 1), 1.0)


def _pins(fin: pd.DataFrame) -> np.ndarray:
    """Per trial: one of the design loop's pin trials (phase `pin`), which it places once the
    verdict is decided, near each optimum, for the per-batch table (`_bottoms`). Everything
    else leaves them out: they cannot undo the verdict, and the far trials that tell the rules
    apart keep their weight. (All false when leaving them out would leave a batch size with
    no trial.)"""
    if "phase" not in fin.columns:
        return np.zeros(len(fin), dtype=bool)
    pin = fin["phase"].to_numpy() == PIN_PHASE
    if set(fin["batch_size"][~pin]) != set(fin["batch_size"]):
        return np.zeros(len(fin), dtype=bool)
    return pin


def _near(design: Design, centre: np.ndarray) -> np.ndarray:
    """Per batch level: its trials (finite or diverged) within LOCAL_NEAR decade of `centre`
    (its log10 optimum); LOCAL_MIN of them are enough to fit the bottom of its basin alone."""
    near = np.abs(design.x - centre[design.bi]) <= LOCAL_NEAR
    return np.bincount(design.bi[near], minlength=design.nb)


def _bottoms(
    table: pd.DataFrame,
    base: pd.DataFrame,
    design: Design,
    pin: np.ndarray,
    sign: float,
    log_scale: bool,
    rng: np.random.Generator,
    replicates: int,
    quick: bool,
) -> pd.DataFrame:
    """The per-batch rows of the batch sizes the design loop pinned (`pin`: trials placed near
    each optimum once the verdict was decided), where trials are dense near the optimum, taken
    from the model of every trial fitted to the bottom of the basins only (LOCAL_DECADES):
    there a parabola describes even a basin that is not one over a decade, and the trials far
    from the optimum no longer move it through the shared shape. The rules and alpha keep the
    CUT_DECADES fit without the pin trials (its far trials are what tells the rules apart).
    Only where pinned: on a basin the model describes, the one-decade fit's optima are the
    more precise (planted Optuna-like designs: intervals about half as wide).
    Columns `mu_local` and `n_near`: every batch size's log10 optimum in the bottom-of-basin
    fit and its trials within LOCAL_NEAR decade of it, wherever that fit was made."""
    table = table.copy()
    table["window_decades"] = basin.CUT_DECADES
    table["mu_local"] = None
    table["n_near"] = None
    pinned = np.bincount(design.bi[pin], minlength=design.nb) > 0
    if not pinned.any():
        return table
    cut, fit = basin.fit_cut(design, decades=LOCAL_DECADES)
    near = _near(design, fit.params[: design.nb])
    dense = pinned & (near >= LOCAL_MIN)
    pos = {int(b): j for j, b in enumerate(design.batches)}
    table["mu_local"] = [
        float(fit.params[pos[int(b)]]) if int(b) in pos else None for b in table["batch_size"]
    ]
    table["n_near"] = [
        int(near[pos[int(b)]]) if int(b) in pos else None for b in table["batch_size"]
    ]
    if quick or not dense.any():  # (quick: the pin phase's refits need only `mu_local`)
        return table
    local = _per_batch(base, design, fit, cut, sign, log_scale, rng, replicates, quick)
    use = table["batch_size"].astype(int).isin([int(b) for b in design.batches[dense]])
    for c in PER_BATCH_COLUMNS:
        table.loc[use, c] = local.loc[use, c]
    table.loc[use, "window_decades"] = LOCAL_DECADES
    return table


def _fit_rules(sub: Design, cut: float, free: Fit, ref: float, constant: bool) -> dict:
    """Every rule fitted by maximum likelihood. A rule that nests others starts from their
    fits as well as from the free optima (`basin.fit_best`): the power law from linear, sqrt
    and constant (and those again from the power law's fit); the curved rule from the power
    law; the saturating rule from its two limits (constant for a knee far below the range,
    linear far above it)."""
    fits: dict[str, Fit] = {}
    fixed_names = ["linear", "sqrt"] + (["constant"] if constant else [])
    for name in fixed_names:
        fits[name] = fit_model(sub, _mu_model(name, ref), cut, start=free.params)
    power = _mu_model("power", ref)
    starts = [basin.convert(free.params, sub, power)]
    for _ in range(3):  # power from the fixed rules, and the fixed rules back from power
        starts += [
            np.r_[fits[n].params[0], FIXED_ALPHA[n], fits[n].params[1:]] for n in fixed_names
        ]
        fits["power"] = basin.fit_best(sub, power, cut, starts)
        p = fits["power"].params
        starts = [p]
        improved = False
        for name in fixed_names:
            again = fit_model(sub, _mu_model(name, ref), cut, start=np.r_[p[0], p[2:]])
            if again.loglik > fits[name].loglik + 1e-6:
                fits[name], improved = again, True
        if not improved:
            break
    if len(sub.batches) >= 4:
        curved = _mu_model("curved", ref)
        fits["curved"] = basin.fit_best(
            sub, curved, cut, [basin.convert(free.params, sub, curved), np.r_[p[:2], 0.0, p[2:]]]
        )
    fits["saturating"] = basin.fit_best(
        sub, SATURATING, cut, _saturating_starts(sub, free, fits, ref)
    )
    rules: dict = {
        name: RuleFit(
            name,
            f.loglik,
            f.n_params,
            f.aicc,
            tuple(float(v) for v in f.params[: f.layout.k_mu]),
            f.converged,
        )
        for name, f in fits.items()
    }
    rules["_power_fit"] = fits["power"]
    rules["_saturating_fit"] = fits["saturating"]
    return rules


def _saturating_starts(
    sub: Design, free: Fit, fits: dict[str, Fit], ref: float
) -> list[np.ndarray]:
    """lr_max / (1 + B_noise / B): from the free optima (a knee inside the range), and from
    its limits: B_noise far above the range (linear: lr_max = lr(B) B_noise / B) and far below
    it (constant: lr_max = lr)."""
    lb = sub.log_b
    starts = [basin.convert(free.params, sub, SATURATING)]
    far = float(lb.max()) + 3.0
    lin = fits["linear"].params
    # linear's mu = a + (log B - ref) = log lr_max - log B_noise + log B for B << B_noise
    starts.append(np.r_[lin[0] - ref + far, far, lin[1:]])
    pw = fits["power"].params
    const = fits["constant"].params if "constant" in fits else np.r_[pw[0], pw[2:]]
    starts.append(np.r_[const[0], float(lb.min()) - 3.0, const[1:]])
    # and from the power law with the knee inside the range (log lr_max - log 2 there): the
    # likelihood can have a maximum there beside the limits', and started only from the
    # limits a fit once missed it by 6-13 AICc (the exact quadratic problem, B = 4..64,
    # without the constant rule: the design loop's looks)
    for knee in (float(lb.min()), ref, float(lb.max())):
        mu_knee = pw[0] + pw[1] * (knee - ref)
        starts.append(np.r_[mu_knee + math.log10(2.0), knee, pw[2:]])
    return starts


def _alpha(
    sub: Design,
    cut: float,
    power_fit: Fit,
    ref: float,
    rng: np.random.Generator,
    replicates: int,
    level: float = 0.95,
):
    model = basin.power(ref)
    lik = Likelihood(sub, model, cut)
    alpha = float(power_fit.params[1])
    base = float(chi2.ppf(level, 1))
    ci_chi2 = profile_interval(
        lik, power_fit.params, power_fit.loglik, 1, threshold=base, limit=4.0
    )
    cal = None
    ci, threshold = ci_chi2, base
    if replicates > 0:
        stats, failed = lr_statistics(sub, model, cut, power_fit.params, [1], replicates, rng)
        cal = calibration_from(stats, failed)
        if cal.widened:  # the same Bartlett scale at any level
            threshold = base * cal.threshold / CHI2_1_95
            ci = profile_interval(
                lik, power_fit.params, power_fit.loglik, 1, threshold=threshold, limit=4.0
            )
    ci_same = None
    if abs(float(power_fit.globals[NOISE_TREND])) >= STEEP_NOISE_TREND:
        ci_same = _alpha_without_noise_trend(sub, model, cut, power_fit, threshold)
        if ci_same is not None:
            ci = _union(ci, ci_same)
    return alpha, ci_chi2, ci, cal, ci_same


def _noise_drift(fit: Fit, design: Design) -> float:
    """The fitted seed noise sd at the largest batch size over that at the smallest."""
    z = design.z
    return float(math.exp(float(fit.globals[NOISE_TREND]) * (float(z.max()) - float(z.min()))))


def _alpha_without_noise_trend(
    sub: Design,
    model: MuModel,
    cut: float,
    power_fit: Fit,
    threshold: float,
) -> tuple[float | None, float | None] | None:
    """Alpha's profile interval (at the fitted interval's calibrated `threshold`) with the
    seed noise the same at every batch size; None when that fit is degenerate (not converged,
    or alpha beyond ALPHA_MAX): the trials then reject the same noise at every B outright
    (seen on a real exact-problem sweep, 134 of 155 trials at B = 4: alpha ran to 708 on flat
    basins, 96 log-likelihood units below the fitted noise, and its open interval had opened
    alpha's)."""
    lik = Likelihood(sub, model, cut, noise_trend=False)
    start = power_fit.params.copy()
    start[power_fit.layout.g.start + NOISE_TREND] = 0.0
    params, ll, converged = basin.maximize(lik, start)
    if not converged or not abs(float(params[1])) <= ALPHA_MAX:
        return None
    return profile_interval(lik, params, ll, 1, threshold=threshold, limit=4.0)


def _union(
    a: tuple[float | None, float | None], b: tuple[float | None, float | None]
) -> tuple[float | None, float | None]:
    """The smallest interval holding both (a side open in either is open)."""
    lo = None if a[0] is None or b[0] is None else min(a[0], b[0])
    hi = None if a[1] is None or b[1] is None else max(a[1], b[1])
    return lo, hi


def _b_noise(sub: Design, cut: float, sat: Fit, quick: bool = False):
    """B_noise of the saturating rule with its profile interval, and lr_max; None where the
    fit runs off the bounds (no knee: linear, or flat, over the whole range)."""
    lik = Likelihood(sub, SATURATING, cut)
    lo_b, hi_b = lik.bounds()[1]
    v = float(sat.params[1])
    at_bound = v <= lo_b + 1e-3 or v >= hi_b - 1e-3
    lo = hi = None
    if not quick:
        lo, hi = profile_interval(
            lik, sat.params, sat.loglik, 1, step=0.1, limit=max(v - lo_b, hi_b - v)
        )
    lo = None if lo is None or lo <= lo_b + 1e-3 else lo
    hi = None if hi is None or hi >= hi_b - 1e-3 else hi
    b_noise = None if at_bound else float(10**v)
    lr_max = (
        None if v >= hi_b - 1e-3 or not abs(sat.params[0]) < 300 else float(10 ** sat.params[0])
    )
    return b_noise, (None if lo is None else 10**lo, None if hi is None else 10**hi), lr_max
