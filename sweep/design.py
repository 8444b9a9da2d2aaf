"""The design loop's decisions: where the next trial goes, and whether the sweep may stop.

Pure functions of the model of all finished trials (`analysis.inference.Inference`) and of
counts; no Ray, no Optuna (the searcher turns a `Proposal` into an Optuna ask). In order:

1. `start`: a batch size with fewer than MIN_TRIALS finished trials is explored over a range
   centred on its neighbours' fitted optimum (the power law through the located optima, else
   the nearest located one moved along alpha = 0.75, else the configured centre), not on the
   linear rule.
2. `bracket`: a batch size whose best tried lr has no worse lr on one side (or only one within
   noise of it, or more than a decade away) gets a trial half a decade beyond it on that side
   (beyond the largest lr below the divergence edge).
3. `cover`: a located batch size with fewer than MIN_STOP trials gets one on a flank of its
   basin (alternating sides), so every batch size can judge a knee or a peak, not only the two
   ends that matter most for alpha.
4. `alpha`: otherwise the trial that shrinks alpha's variance most: for every located batch
   size, warmup and lr on the flanks of its modelled basin (up to FLANK of the way out below
   the optimum, FLANK_RIGHT above it, short of the divergence edge), the expected reduction
   of Var(alpha) from one more trial there, from the power law's Fisher information I
   (c-optimal design): w (e' I^-1 g)^2 / (1 + w g' I^-1 g), g the gradient of the trial's
   predicted metric, w its inverse noise variance. It puts trials on both flanks of
   the basins (the vertex alone says nothing about where it is), at the batch sizes with the
   most leverage on alpha, and where a basin is flat (more trials, hence more seeds, there);
   never at a batch size with more than BALANCE times the trials of the least tried one.

`stop_reason` says whether the verdict is decided or the budget is spent; `status_line` shows
the answer forming.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from analysis import basin
from analysis.basin import Likelihood
from analysis.decision import ALPHA_MAX, Decision
from analysis.inference import LOCAL_MIN, Inference

MIN_TRIALS = 3  # finished trials a batch size needs before its basin can be modelled (4
# cost the planted benchmark a trial or two a sweep)
START_HALF = 1.0  # decades on each side of the predicted optimum for a new batch size...
START_HALF_FITTED = 0.6  # ... or when a power law through located neighbours predicts it
BRACKET_STEP = 0.5  # decades beyond an unbracketed best tried lr
SIDE_MIN, SIDE_MAX = 0.15, 1.5  # decades: the modelled basin's half-widths, clipped
CANDIDATES = 13  # lrs per batch size and warmup considered by the c-optimal step
FLANK = 0.6  # share of the modelled half-width where trials go: far enough from the vertex to
# locate it, near enough that the parabola still describes the basin there
FLANK_RIGHT = 0.35  # ...but the `alpha` trials above the optimum only this share (`cover`
# keeps FLANK on both sides): there the seed noise grows with the lr (SGD's noise scale; on the
# exact quadratic problem about 10x per decade), so a trial far up the divergence side says
# less than the model's one noise level credits it with, and its chance deviation moves the
# basin's shared shape, hence every optimum (0.6 on both sides:
# `quadratic-expected` a median 28 trials, 27 of 45 optima within 1.25x; 0.35 here: 24 and 35)
MID_ALPHA = 0.75  # between the rules: how a batch size without data is extrapolated
EDGE_GAP = 0.1  # decades: a divergence edge known this closely is not probed further
MAX_BRACKET_AT = 40  # a batch size never located after this many trials is left as it is
MIN_STOP = 4  # finished trials every batch size needs before the sweep may stop (5 cost
# the planted benchmark 2-3 trials a sweep; the verdict's own guard, trials in the basins
# beyond the model's parameters, keeps a thinly fitted basin from deciding)
STOP_LEVEL = 0.99  # alpha's interval must be decided at this level to stop (the verdict is
# looked at after every trial; a stricter interim level keeps the many looks from turning a
# 5% chance of a wrong interval into a much larger one)
STREAK = 1  # consecutive decided looks before the stricter check (2 cost the planted
# benchmark a trial or two; a default sweep once stopped on one decided look after 100
# undecided ones while its report said inconclusive, but the cause was the fit's dependence on
# the trials' order, fixed since, and the stop is looked at again on every finished trial)
BALANCE = 3  # an `alpha` trial goes to a batch size with at most this many times the trials
# of the least tried one: the c-optimal gain comes from a model that may be wrong, and where it
# is, the gain can stay highest at one batch size (seen on the exact quadratic problem: 76 of
# 95 trials at the middle one of B = 4, 16, 64, its flanks ever more precisely fitted by a
# parabola they do not follow, and alpha 0.75 [0.72, 0.78] where the truth is 1)
MIN_CI_WIDTH = 0.005  # an interval narrower than this is a fit stuck at a bound
PIN_STENCIL = (-0.075, 0.075, -0.225, 0.225)  # decades from the current optimum, in turn: the
# pin trials (`pin`) go where a parabola describes the basin's bottom (analysis.inference's
# LOCAL_DECADES fit), on both sides, and follow the optimum as it moves
STRICT_GAP = 4  # at least this many more trials (and 1/8 more) before checking again


@dataclass(frozen=True)
class Proposal:
    """The next trial: a batch size, a range for Optuna (log10 lr), and the model's point in
    it (None: Optuna chooses freely in the range)."""

    batch_size: int
    lo: float  # log10 lr
    hi: float
    x: float | None  # log10 lr the model proposes
    warmup: float | None  # None: Optuna chooses
    reason: str  # start | bracket | cover | alpha | pin


def _located(inf: Inference) -> list[tuple[int, float]]:
    t = inf.table
    if t.empty:
        return []
    ok = t[t["in_fit"] & t["mu_model"].notna()]
    return [(int(r.batch_size), float(r.mu_model)) for r in ok.itertuples()]


def predicted_optimum(inf: Inference, batch: int, centre: float) -> float:
    """log10 of the best lr a batch size without data should start from."""
    if inf.alpha is not None:
        mu = inf.rule_mu("power", batch)
        if mu is not None:
            return float(mu)
    located = _located(inf)
    if not located:
        return centre
    b0, mu0 = min(located, key=lambda t: abs(math.log(t[0] / batch)))
    return mu0 + MID_ALPHA * math.log10(batch / b0)


def basin_sides(inf: Inference, row) -> tuple[float, float]:
    """Half-widths (decades) of the modelled bottom of a batch size's basin, left and right:
    where the fitted parabola rises by the censoring cut."""
    cut = inf.cut or 0.0
    left = math.sqrt(cut / float(row.curv_left)) if row.curv_left else SIDE_MAX
    right = math.sqrt(cut / float(row.curv_right)) if row.curv_right else SIDE_MAX
    return float(np.clip(left, SIDE_MIN, SIDE_MAX)), float(np.clip(right, SIDE_MIN, SIDE_MAX))


def edge_cap(design: basin.Design, bi: int, lr_div) -> float:
    """The largest log10 lr worth a trial at batch level `bi` below its divergence edge
    `lr_div` (inf: no edge): halfway between the edge and the largest finite lr below it, so
    that trials near the edge bisect the gap; once the gap is under EDGE_GAP decades, that
    largest finite lr itself. Never at or beyond the edge, even when the modelled vertex lies
    there: a trial that diverges adds almost nothing, and stepping down a little below the
    last one (as this loop once did, 0.05 decade at a time) spends a trial per step (seen: 10
    of a real sweep's 56 trials, in pairs, at the largest batch size)."""
    if not _finite(lr_div):
        return math.inf
    x_div = math.log10(float(lr_div))
    below = design.x[(design.bi == bi) & np.isfinite(design.y) & (design.x < x_div)]
    if not len(below):
        return x_div - BRACKET_STEP
    x_fin = float(below.max())
    return x_fin if x_div - x_fin < EDGE_GAP else 0.5 * (x_fin + x_div)


def _right_cap(inf: Inference, b: int, row) -> float:
    """`edge_cap` of batch size b, from the power law's trials when they hold it."""
    d = inf.power_design
    if d is not None and b in set(d.batches.astype(int)):
        return edge_cap(d, int(np.flatnonzero(d.batches == b)[0]), row["lr_div"])
    return math.log10(float(row["lr_div"])) - 0.05 if _finite(row["lr_div"]) else math.inf


def _running_info(lik: Likelihood, params: np.ndarray, cut: float | None, running) -> np.ndarray:
    """The Fisher information the running trials will add (those at batch sizes and warmups
    the model has)."""
    d = lik.d
    levels = {int(b): i for i, b in enumerate(d.batches)}
    wlev = {float(w): i for i, w in enumerate(d.warmups)}
    keep = [(levels[b], wlev[w], x) for b, x, w in running if b in levels and w in wlev]
    if not keep:
        return np.zeros((lik.n_params, lik.n_params))
    bi, wi, xs = (np.array(v) for v in zip(*keep, strict=True))
    g, rise, sd = lik.pred_jacobian(params, bi.astype(int), wi.astype(int), xs.astype(float))
    weight = np.where(rise <= (cut or 0.0), 1.0 / sd**2, 0.0)
    return (g * weight[:, None]).T @ g


def alpha_gains(
    inf: Inference, warmups: list[float], running: tuple[tuple[int, float, float], ...] = ()
) -> list[tuple[float, int, float, float]]:
    """(gain, batch size, log10 lr, warmup) for candidate trials, best first (see the module
    docstring); empty when alpha is not fitted. `running`: (batch size, log10 lr, warmup) of
    trials running now, counted as if done (their information does not depend on their
    result), so that parallel asks spread instead of repeating the same trial."""
    fit, design = inf.power_fit, inf.power_design
    if fit is None or design is None or inf.ref_log_b is None:
        return []
    lik = Likelihood(design, basin.power(inf.ref_log_b), inf.cut)
    info = lik.fisher(fit.params, edges=False) + _running_info(lik, fit.params, inf.cut, running)
    cov = np.linalg.pinv(info)
    e_cov = cov[1]  # row of alpha
    rows = inf.table.set_index("batch_size")
    out = []
    for bi, b in enumerate(design.batches):
        row = rows.loc[int(b)]
        left, right = basin_sides(inf, row)
        mu = float(fit.params[0] + fit.params[1] * (design.log_b[bi] - inf.ref_log_b))
        hi = min(mu + right, edge_cap(design, bi, row.lr_div))
        right_end = min(hi, mu + FLANK_RIGHT * right)
        xs = np.linspace(min(mu - FLANK * left, right_end - 0.1), right_end, CANDIDATES)
        for wi, w in enumerate(design.warmups):
            if float(w) not in warmups:
                continue
            g, rise, sd = lik.pred_jacobian(
                fit.params, np.full(len(xs), bi), np.full(len(xs), wi), xs
            )
            weight = np.where(rise <= inf.cut, 1.0 / sd**2, 0.0)  # beyond the cut: censored
            eg = g @ e_cov
            gg = np.einsum("ij,jk,ik->i", g, cov, g)
            gain = weight * eg**2 / (1.0 + weight * gg)
            for x, v in zip(xs, gain, strict=True):
                out.append((float(v), int(b), float(x), float(w)))
    return sorted(out, key=lambda t: -t[0])


def propose(
    inf: Inference,
    batch_sizes: list[int],
    counts: dict[int, int],
    warmups: list[float],
    centre: dict[int, float],
    start_half: float = START_HALF,
    busy: frozenset[int] = frozenset(),
    running: tuple[tuple[int, float, float], ...] = (),
) -> Proposal:
    """The next trial (see the module docstring). `counts`: finished (and running) trials per
    batch size; `centre`: log10 of each batch size's configured search centre (the last
    resort, searched `start_half` decades each way); `busy`: batch sizes with a trial running,
    whose bracketing waits for its result (unless nothing else is left to do); `running`:
    (batch size, log10 lr, warmup) of the trials running (see `alpha_gains`)."""
    new = [b for b in batch_sizes if counts.get(b, 0) < MIN_TRIALS]
    if new:
        b = min(new, key=lambda v: (counts.get(v, 0), v))
        mu = predicted_optimum(inf, b, centre[b])
        half = START_HALF_FITTED if inf.alpha is not None else START_HALF
        if not _located(inf):
            half = start_half
        return Proposal(b, mu - half, mu + half, None, None, "start")
    rows = inf.table.set_index("batch_size") if len(inf.table) else None
    unlocated = [
        b
        for b in batch_sizes
        if rows is not None
        and b in rows.index
        and counts.get(b, 0) <= MAX_BRACKET_AT
        and not _firm(rows.loc[b])
        and (_finite(rows.loc[b]["lr_best_tried"]) or _finite(rows.loc[b]["lr_div"]))
    ]
    idle = [b for b in unlocated if b not in busy]
    if unlocated and (idle or not _two_located(rows, batch_sizes)):
        b = (idle or unlocated)[0]
        return _bracket(b, rows.loc[b])
    thin = [b for b in batch_sizes if counts.get(b, 0) < MIN_STOP]
    thin = [b for b in thin if rows is not None and b in rows.index and rows.loc[b]["in_fit"]]
    if thin:  # every batch size gets MIN_STOP trials: the rules other
        # than the power law (a knee, a peak) are judged at all of them, not only at the ends
        b = min(thin, key=lambda v: (counts.get(v, 0), v))
        row = rows.loc[b]
        mu = float(row["mu_model"])
        left, right = basin_sides(inf, row)
        x = (
            mu - FLANK * left
            if counts.get(b, 0) % 2
            else min(mu + FLANK * right, _right_cap(inf, b, row))
        )
        return Proposal(b, mu - left, max(mu + right, x), x, None, "cover")
    # a degenerate fit: no weights
    gains = alpha_gains(inf, warmups, running) if settled(inf) else []
    least = min((counts.get(int(b), 0) for _, b, _, _ in gains), default=0)
    balanced = [t for t in gains if counts.get(t[1], 0) <= BALANCE * max(least, 1)]
    gains = balanced or gains
    if gains:
        _, b, x, w = gains[0]
        row = rows.loc[b]
        left, right = basin_sides(inf, row)
        mu = float(row["mu_model"])
        return Proposal(b, min(mu - left, x), max(mu + right, x), x, w, "alpha")
    # alpha not fitted yet (too few located optima), or not settled: the widest located basin,
    # both flanks
    b = max(batch_sizes, key=lambda v: _width(rows, v))
    row = rows.loc[b]
    mu = row["mu_model"]
    mu = math.log10(float(row["lr_best_tried"])) if mu is None or math.isnan(mu) else float(mu)
    left, right = basin_sides(inf, row) if row["curv_left"] is not None else (0.5, 0.5)
    side = -left if counts.get(b, 0) % 2 else right
    return Proposal(b, mu - left, mu + right, mu + 0.7 * side, None, "alpha")


def pin(
    inf: Inference,
    batch_sizes: list[int],
    pins: dict[int, int],
    per_batch: int,
    warmup: float = 0.0,
) -> Proposal | None:
    """The next pin trial once the verdict is decided (`adaptive.pin_trials`): `per_batch`
    trials at each batch size near its optimum (up to twice that where it moved away from
    them, `_unpinned`), for the per-batch table's best lr (the verdict does not see them). It
    goes to the batch size with the fewest so far, at the next PIN_STENCIL offset from its
    optimum as now fitted (the bottom-of-basin fit's, analysis.inference `mu_local`, once
    there is one). None when no batch size needs one, or none has an optimum to pin.
    `warmup`: the reference level (the table's)."""
    rows = inf.table.set_index("batch_size") if len(inf.table) else None
    centres = {
        b: pinned_optimum(inf, b) for b in batch_sizes if _unpinned(rows, b, pins, per_batch)
    }
    todo = [b for b, mu in centres.items() if mu is not None]
    if not todo:
        return None
    b = min(todo, key=lambda v: (pins.get(v, 0), v))
    x = centres[b] + PIN_STENCIL[pins.get(b, 0) % len(PIN_STENCIL)]
    return Proposal(b, x, x, x, warmup, "pin")


def _unpinned(rows, b: int, pins: dict[int, int], per_batch: int) -> bool:
    """Fewer than `per_batch` pin trials at the batch size, or fewer than twice that while its
    bottom-of-basin optimum still has fewer than LOCAL_MIN (or `per_batch`, if fewer) trials
    within LOCAL_NEAR decade: it moved away from the first ones (seen at B = 1024 of the exact
    quadratic problem, whose loop had put the optimum 4x low; its pins walked up to it)."""
    n = pins.get(b, 0)
    if n < per_batch:
        return True
    if n >= 2 * per_batch or rows is None or b not in rows.index or "n_near" not in rows.columns:
        return False
    near = rows.loc[b]["n_near"]
    return _finite(near) and float(near) < min(LOCAL_MIN, per_batch)


def _firm(row) -> bool:
    """Is the batch size's best tried lr flanked, on both sides, by a worse trial that says
    where the basin turns (`analysis.inference._bracket`: not only a finite one within noise
    of it, or one more than a decade away)?"""
    return bool(row["in_fit"]) and not isinstance(row.get("loose_side"), str)


def _bracket(b: int, row) -> Proposal:
    """Half a decade beyond a batch size's best tried lr, on the side with no worse lr, or
    only a loose one (a decade below the lowest lr when every trial diverged)."""
    if not _finite(row["lr_best_tried"]):
        x = math.log10(float(row["lr_div"])) - 2 * BRACKET_STEP
        return Proposal(b, x - BRACKET_STEP, x + BRACKET_STEP, x, None, "bracket")
    best = math.log10(float(row["lr_best_tried"]))
    side = row["loose_side"] if bool(row["in_fit"]) else row["edge_side"]
    if side == "low":
        x = best - BRACKET_STEP
        return Proposal(b, x - BRACKET_STEP, best, x, None, "bracket")
    x = best + BRACKET_STEP
    if row["lr_div"] is not None and not math.isnan(float(row["lr_div"])):
        x = min(x, (best + math.log10(float(row["lr_div"]))) / 2)
    return Proposal(b, best, x + BRACKET_STEP, x, None, "bracket")


def _finite(v) -> bool:
    try:
        return v is not None and math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def _two_located(rows, batch_sizes: list[int]) -> bool:
    """Fewer than two located batch sizes: nothing to cover or to weigh for alpha yet."""
    located = [b for b in batch_sizes if b in rows.index and bool(rows.loc[b]["in_fit"])]
    return len(located) >= 2


def _width(rows, b: int) -> float:
    if rows is None or b not in rows.index:
        return math.inf
    r = rows.loc[b]
    lo, hi = r["lr_ci_lo"], r["lr_ci_hi"]
    if lo is None or hi is None or math.isnan(float(lo)) or math.isnan(float(hi)):
        return math.inf
    return math.log10(float(hi) / float(lo))


@dataclass(frozen=True)
class Budget:
    trials: int | None = None  # adaptive trials at most
    minutes: float | None = None  # wall-clock minutes of the whole sweep at most


def settled(inf: Inference) -> bool:
    """The power law's fit is one to act on: alpha fitted within +-ALPHA_MAX, with a finite
    interval of some width. On a few noisy trials the joint fit can land in a degenerate
    optimum (seen on a real sweep: alpha = 406 with an unbounded interval, alpha = 0.50 with
    an interval of zero width), and a rule judged against that fit means nothing."""
    if inf.alpha is None or not abs(inf.alpha) <= ALPHA_MAX:
        return False
    lo, hi = inf.alpha_ci
    if lo is None or hi is None or not (math.isfinite(lo) and math.isfinite(hi)):
        return False
    return hi - lo >= MIN_CI_WIDTH and lo <= inf.alpha <= hi


def ready_to_stop(inf: Inference, counts: dict[int, int], batch_sizes: list[int]) -> bool:
    """Every batch size has MIN_STOP finished trials and a located optimum, firmly bracketed
    (`_firm`, unless it had MAX_BRACKET_AT trials), and the model's fit is `settled`."""
    if inf.table.empty or not settled(inf):
        return False
    t = inf.table
    located = set(t.loc[t["in_fit"] & ~t["at_edge"], "batch_size"])
    firm = {int(r["batch_size"]) for _, r in t.iterrows() if _firm(r)}
    return all(
        counts.get(b, 0) >= MIN_STOP and b in located and (b in firm or counts[b] > MAX_BRACKET_AT)
        for b in batch_sizes
    )


def stop_reason(decided: bool, n_trials: int, minutes: float, budget: Budget) -> str | None:
    """'decided' when the verdict is decided (see `run_loop` for what that takes), 'budget'
    when the budget is spent, else None."""
    if decided:
        return "decided"
    if budget.trials is not None and n_trials >= budget.trials:
        return "budget"
    if budget.minutes is not None and minutes >= budget.minutes:
        return "budget"
    return None


def status_line(
    inf: Inference, dec: Decision, n_trials: int, ready: bool = True, confirmed: bool = True
) -> str:
    """e.g. 'alpha = 0.62 [0.41, 0.83] after 40 trials; deciding: linear vs neither'. A
    decided look says only where the answer leans while `ready` is False (a batch size not
    located yet, or short of MIN_STOP trials) or until the calibrated check `confirmed` it."""
    if inf.alpha is None:
        located = inf.n_points
        return (
            f"alpha not fitted yet after {n_trials} trials ({located} batch size(s) located, "
            f"3 needed)"
        )
    lo, hi = inf.alpha_ci
    ci = f"[{'-inf' if lo is None else f'{lo:.2f}'}, {'inf' if hi is None else f'{hi:.2f}'}]"
    head = f"alpha = {inf.alpha:.2f} {ci} after {n_trials} trials"
    if not settled(inf):
        return f"{head}; the model's fit has not settled yet"
    if dec.verdict != "inconclusive":
        if not ready:
            return f"{head}; leaning: {dec.verdict} (not every batch size located yet)"
        if not confirmed:
            return f"{head}; leaning: {dec.verdict} (to be confirmed at 99%, calibrated)"
        return f"{head}; decided: {dec.verdict}"
    if dec.candidates:
        return f"{head}; deciding: {' vs '.join(dec.candidates)}"
    return f"{head}; undecided ({dec.reason})"


# ---------------------------------------------------------------- looking after a trial
@dataclass
class Looks:
    """What the loop remembers between looks (a function of the finished trials and of the
    order they finished in; a resumed sweep starts it again at zero)."""

    streak: int = 0  # looks in a row that were ready to stop and decided
    undecided: int = 0  # looks in a row that were ready to stop and undecided
    next_strict: int = 0  # trials needed before the next calibrated check (each costs
    # seconds to a minute of refits; after one that did not decide, wait for more data)


@dataclass(frozen=True)
class Look:
    inference: Inference
    decision: Decision
    decided: bool  # decided at STOP_LEVEL with calibrated intervals: the sweep may stop
    ready: bool  # every batch size located with MIN_STOP trials


def look(
    frame,
    counts: dict[int, int],
    batch_sizes: list[int],
    looks: Looks,
    metric: str,
    maximize: bool = False,
    constant: bool = False,
    replicates: int = 100,
    seed: int = 0,
    strict_now: bool = False,
) -> Look:
    """Refit the model to the finished trials (`frame`, the columns `analysis.inference`
    reads) and say whether the sweep may stop: every batch size located with MIN_STOP trials,
    the verdict decided (chi-square 95% intervals) at STREAK looks in a row (`strict_now`: at
    this one), and still decided with intervals calibrated by simulation at STOP_LEVEL."""
    from analysis.decision import decide
    from analysis.inference import infer

    def fit(**kw):
        return infer(
            frame,
            metric,
            maximize,
            constant=constant,
            warmup=False,
            seed=seed,
            bottoms=False,
            **kw,
        )

    inf = fit(replicates=0, quick=True)
    dec = decide(inf)
    ready = ready_to_stop(inf, counts, batch_sizes)
    undecided = dec.verdict == "inconclusive"
    looks.streak = looks.streak + 1 if ready and not undecided else 0
    looks.undecided = looks.undecided + 1 if ready and undecided else 0
    n = len(frame)
    due = (looks.streak >= STREAK and n >= looks.next_strict) or strict_now
    if ready and not undecided and due:
        strict = fit(replicates=replicates, level=STOP_LEVEL)
        if decide(strict).verdict != "inconclusive" and ready_to_stop(strict, counts, batch_sizes):
            return Look(inf, dec, True, ready)
        looks.next_strict = n + max(STRICT_GAP, n // 8)
    return Look(inf, dec, False, ready)


def extend(batch_sizes: list[int], looks: Looks, batch_sizes_max: int | None) -> int | None:
    """A batch size to add: twice the largest, when every batch size has been located and the
    verdict stayed undecided for as many looks as there are batch sizes (one more trial at each
    did not decide it: a wider range separates the rules more than more seeds do), and the
    config allows it (`batch_sizes_max`)."""
    top = max(batch_sizes)
    if batch_sizes_max is None or top * 2 > batch_sizes_max:
        return None
    if looks.undecided < len(batch_sizes):
        return None
    looks.undecided = 0
    return top * 2


def pinned_optimum(inf: Inference, batch: int) -> float | None:
    """log10 of a batch size's best lr for the pin trials and the noise-scale trial: the
    bottom-of-basin fit's (`mu_local`) where there is one, else `optimum`."""
    rows = inf.table.set_index("batch_size") if len(inf.table) else None
    if rows is not None and batch in rows.index and "mu_local" in rows.columns:
        local = rows.loc[batch]["mu_local"]
        if _finite(local):
            return float(local)
    return optimum(inf, batch)


def optimum(inf: Inference, batch: int) -> float | None:
    """log10 of a batch size's modelled best lr (its best tried lr if the model has none)."""
    if inf.table.empty or batch not in set(inf.table["batch_size"]):
        return None
    row = inf.table.set_index("batch_size").loc[batch]
    mu = row.get("mu_model")
    if mu is not None and math.isfinite(float(mu)):
        return float(mu)
    v = row.get("lr_best_tried")
    return math.log10(float(v)) if v is not None and math.isfinite(float(v)) else None


# ---------------------------------------------------------------- the loop without Ray
@dataclass(frozen=True)
class LoopResult:
    trials: list[dict]  # every trial run, in order (the columns `analysis.inference` reads)
    verdicts: list[str]  # the decision after each trial ("" before the model could fit)
    stopped: str | None  # decided | budget
    inference: Inference | None
    decision: Decision | None


def run_loop(
    run_trial,
    batch_sizes: list[int],
    warmups: list[float],
    centre: dict[int, float],
    budget: Budget,
    seed: int = 0,
    metric: str = "val_loss",
    replicates: int = 100,
    initial: list[dict] | None = None,
    pin_trials: int = 0,
) -> LoopResult:
    """The design loop driven by a function instead of Ray and Optuna, one trial at a time:
    `run_trial(batch_size, lr, warmup, seed) -> (final metric, diverged)`. Where a proposal
    leaves the lr to the sampler, it is drawn uniformly in log lr over the proposal's range
    (what a sampler without history does). After every trial the model is refitted (`look`);
    when the sweep may stop, it reports the calibrated 95% verdict."""
    from analysis.decision import decide
    from analysis.inference import infer

    rng = np.random.default_rng(seed)
    trials = list(initial or [])
    verdicts: list[str] = []
    inf = dec = None
    stopped = None
    looks = Looks()
    counts: dict[int, int] = {}
    if trials:
        frame = _frame(trials, metric)
        counts = frame.groupby("batch_size").size().to_dict()
        inf = infer(frame, metric, replicates=0, warmup=False, quick=True)
    while stopped is None:
        if inf is None or inf.table.empty:
            prop = Proposal(
                batch_sizes[0],
                centre[batch_sizes[0]] - START_HALF,
                centre[batch_sizes[0]] + START_HALF,
                None,
                None,
                "start",
            )
        else:
            prop = propose(inf, batch_sizes, counts, warmups, centre)
        x = prop.x if prop.x is not None else float(rng.uniform(prop.lo, prop.hi))
        w = prop.warmup if prop.warmup is not None else float(rng.choice(warmups))
        trials.append(_run_one(run_trial, trials, prop.batch_size, x, w, seed, "optuna", metric))
        frame = _frame(trials, metric)
        counts = frame.groupby("batch_size").size().to_dict()
        seen = look(frame, counts, batch_sizes, looks, metric, replicates=replicates, seed=seed)
        inf, dec = seen.inference, seen.decision
        verdicts.append(dec.verdict if inf.alpha is not None else "")
        stopped = stop_reason(seen.decided, len(trials) - len(initial or []), 0.0, budget)
    if stopped == "decided" and pin_trials > 0:
        trials = _pin_trials(
            run_trial, trials, batch_sizes, min(warmups), seed, metric, pin_trials
        )
    if stopped is not None:
        frame = _frame(trials, metric)
        inf = infer(frame, metric, replicates=replicates, seed=seed, warmup=False)
        dec = decide(inf)
        if stopped == "decided":
            verdicts[-1] = dec.verdict
    return LoopResult(trials, verdicts, stopped, inf, dec)


def _pin_trials(
    run_trial, trials: list[dict], batch_sizes, warmup: float, seed: int, metric: str, n: int
) -> list[dict]:
    """`run_loop`'s pin phase: `n` pin trials per batch size (`pin`), refitted after each (the
    bottom-of-basin fit only: nothing but pin trials is added, `refit_bottoms`)."""
    from analysis.inference import infer, refit_bottoms

    trials = list(trials)
    pins: dict[int, int] = {}
    inf = infer(_frame(trials, metric), metric, replicates=0, warmup=False, quick=True)
    while True:
        if pins:
            inf = refit_bottoms(inf, _frame(trials, metric))
        prop = pin(inf, batch_sizes, pins, n, warmup)
        if prop is None:
            return trials
        pins[prop.batch_size] = pins.get(prop.batch_size, 0) + 1
        trials.append(
            _run_one(run_trial, trials, prop.batch_size, prop.x, warmup, seed, "pin", metric)
        )


def _run_one(
    run_trial, trials: list[dict], b: int, x: float, w: float, seed: int, phase: str, metric: str
) -> dict:
    """Run one trial (log10 lr `x`) with the next trial's seed; its row for `trials`."""
    trial_seed = seed * 100_003 + len(trials)
    y, diverged = run_trial(b, 10**x, w, trial_seed)
    return {
        "trial": f"t{len(trials):05d}",
        "batch_size": b,
        "lr": 10**x,
        "warmup_epochs": w,
        "seed": trial_seed,
        "phase": phase,
        "status": "diverged" if diverged else "done",
        metric: math.nan if diverged else y,
    }


def _frame(trials: list[dict], metric: str):
    import pandas as pd

    cols = ["trial", "batch_size", "lr", "warmup_epochs", "seed", "phase", "status", metric]
    return pd.DataFrame(trials, columns=cols)
