"""The verdict as an equivalence decision on alpha, from `analysis.inference.Inference`.

With margin delta (default 0.2), alpha's calibrated 95% interval decides:

- `neither` first, when the saturating rule is clearly better than every power law (AICc lower
  by at least CLEAR_AICC) and its knee B_noise lies inside the measured range, or when the
  curved rule (a best lr that rises and then falls) is clearly better than every monotone one
  with its peak inside the range; or when one of those two shapes is the best rule and one
  of them with its knee or peak inside the range has the linear and sqrt rules both clearly
  worse than it (`rejected`: alpha is then only the average slope of a bend);
- `linear` when the interval lies inside [1 - delta, 1 + delta], the linear rule with its
  margin (the better of the exact rule and the power law, whose alpha is then inside the
  margin; `_within_margin_aicc`) is not clearly worse than the best rule,
  and no rule that bends inside the range (saturating with its knee there, curved with its
  peak there) has substantial support beside it (AICc less than SUPPORT_AICC above the
  linear rule's); `sqrt` likewise inside [0.5 - delta, 0.5 + delta]. Not the exact rule
  (alpha = 1) against the best: with enough trials any slope a little off 1 makes the exact
  rule clearly worse, however deep inside the margin alpha's interval lies (the exact
  quadratic problem: alpha 0.92 [0.91, 0.94] after 153 trials, the exact linear rule 34-52
  AICc behind, where the truth is 0.985 and the right verdict linear);
- `neither` when the interval misses both margins (e.g. alpha = 0.75 measured to +-0.04 with
  delta = 0.2, or alpha near 0: no lr change);
- `inconclusive` otherwise, with the verdicts still possible and how much narrower the
  interval must get to decide; and always while fewer than MIN_RESID_DF trials inside the
  basins are left over beyond the free model's parameters (`few_in_basin`): the seed noise,
  and every interval with it, is not measured yet.

"The interval contains 1" is not evidence for the linear rule; only an interval inside the
margin is. Numbers only: `analysis.verdict` writes the words.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from analysis.inference import ALPHA_MAX, MIN_POINTS, Inference

MARGIN = 0.2
MAX_MARGIN = 0.25  # beyond it the two margins overlap and an interval could lie in both
CLEAR_AICC = 10.0  # "clearly better / worse" (Burnham & Anderson: essentially no support)
SUPPORT_AICC = 2.0  # within this of the best: substantial support (Burnham & Anderson)
MIN_RESID_DF = 4  # trials in the basins beyond the free model's parameters, to measure the
# seed noise with: with fewer, the fitted noise can collapse (the exact quadratic problem,
# 10 trials in the basins for 11 parameters: noise sd 0.0005 against 0.008, alpha's
# interval 0.03 wide around a wrong value) and every interval with it. With 4 to 6 left it
# still could, by a steep drift of the noise with B, which alpha's interval now allows for
# (`analysis.inference.STEEP_NOISE_TREND`); 6 cost the planted benchmark 2 trials a sweep
RULE_ALPHA = {"linear": 1.0, "sqrt": 0.5}
MONOTONE = ("linear", "sqrt", "constant", "power", "saturating")
BENDS = ("saturating", "curved")  # the rules that are not one power law


@dataclass(frozen=True)
class Decision:
    verdict: str  # linear | sqrt | neither | inconclusive
    reason: str  # too_few | few_in_basin | unsettled | saturating | curved | rejected |
    # inside_linear | inside_sqrt | outside | linear_worse | sqrt_worse | bend_supported |
    # overlaps
    margin: float
    candidates: tuple[str, ...] = ()  # verdicts the interval still allows (inconclusive)
    half_width: float | None = None  # alpha interval half-width now
    needed_half_width: float | None = None  # half-width that would decide it
    trials_factor: float | None = None  # about this many times the trials at these batch sizes
    range_factor: float | None = None  # or a batch range this many times wider (log scale)


def regions(margin: float) -> dict[str, tuple[float, float]]:
    return {r: (a - margin, a + margin) for r, a in RULE_ALPHA.items()}


def _clearly_better(inf: Inference, name: str, others: tuple[str, ...]) -> bool:
    r = inf.rules.get(name)
    rivals = [inf.rules[o].aicc for o in others if o in inf.rules and o != name]
    return r is not None and bool(rivals) and r.aicc + CLEAR_AICC <= min(rivals)


def _inside(b: float | None, inf: Inference) -> bool:
    rng = inf.batch_range
    return b is not None and rng is not None and rng[0] <= b <= rng[1]


def decide(inf: Inference, margin: float = MARGIN) -> Decision:
    """Apply the rules of the module docstring."""
    if inf.alpha is None or inf.n_points < MIN_POINTS:
        return Decision("inconclusive", "too_few", margin)
    if inf.resid_df is not None and inf.resid_df < MIN_RESID_DF:
        return Decision("inconclusive", "few_in_basin", margin)
    if not abs(inf.alpha) <= ALPHA_MAX:  # a degenerate optimum of the power fit: its AICc,
        # and every comparison with it, mean nothing
        return Decision("inconclusive", "unsettled", margin)
    # a peak clearly better than every monotone rule (the saturating one included) is the
    # reason even where a saturating knee also beats the power laws: it describes the trials
    if _clearly_better(inf, "curved", MONOTONE) and _inside(inf.peak_b, inf):
        return Decision("neither", "curved", margin)
    if _clearly_better(inf, "saturating", ("linear", "sqrt", "constant", "power")) and _inside(
        inf.b_noise, inf
    ):
        return Decision("neither", "saturating", margin)
    if rejecting_bend(inf):
        return Decision("neither", "rejected", margin)
    lo, hi = inf.alpha_ci
    lo = -math.inf if lo is None else lo
    hi = math.inf if hi is None else hi
    half = (hi - lo) / 2
    reg = regions(margin)
    best = min(r.aicc for r in inf.rules.values())
    for rule, (a, b) in reg.items():
        if a <= lo and hi <= b:
            if _within_margin_aicc(inf, rule) - best > CLEAR_AICC:
                return _undecided(inf, margin, f"{rule}_worse", (rule, "neither"), half)
            if _bend_supported(inf, rule):
                return _undecided(inf, margin, "bend_supported", (rule, "neither"), half)
            return Decision(rule, f"inside_{rule}", margin, half_width=half)
    if all(hi < a or lo > b for a, b in reg.values()):
        return Decision("neither", "outside", margin, half_width=half)
    cands = tuple(r for r, (a, b) in reg.items() if hi >= a and lo <= b)
    if _leaves_margins(lo, hi, reg):
        cands += ("neither",)
    return _undecided(inf, margin, "overlaps", cands, half)


def _within_margin_aicc(inf: Inference, rule: str) -> float:
    """AICc of the rule with its margin: the better of the exact rule and the power law (when
    alpha's interval, hence alpha, lies inside the margin, the power law is the best fit with
    alpha there; the exact rule, one parameter fewer, can still win on AICc, and a rule with
    its margin is never judged worse than the exact rule)."""
    power = inf.rules.get("power")
    exact = inf.rules[rule].aicc
    return exact if power is None else min(exact, power.aicc)


def _bend_supported(inf: Inference, rule: str) -> bool:
    """Does a shape that bends inside the batch range (saturating with its knee inside, curved
    with its peak inside) fit about as well as `rule` (AICc within SUPPORT_AICC)? Alpha's
    interval then measures the slope of a power law that may not hold: seen on the exact
    quadratic problem over B = 4..1024 (linear, then flat above B ~ 256), where the few
    trials at the largest batch size left alpha inside the linear margin while the saturating
    rule fitted as well or better; the verdict said `linear`."""
    mine = inf.rules[rule].aicc
    return any(inf.rules[name].aicc < mine + SUPPORT_AICC for name in bends_inside(inf))


def bends_inside(inf: Inference) -> tuple[str, ...]:
    """The fitted rules that bend inside the batch range: saturating with its knee there,
    curved with its peak there."""
    feature = {"saturating": inf.b_noise, "curved": inf.peak_b}
    return tuple(name for name, b in feature.items() if name in inf.rules and _inside(b, inf))


def rejecting_bend(inf: Inference) -> str | None:
    """The bend behind `rejected`, if any: a shape outside the power laws (saturating or
    curved) fits best, and a bend inside the batch range (saturating with its knee there,
    curved with its peak there; the best rule, else the other) is one that the linear and the
    sqrt rule are each clearly worse than. Not a bend whose feature lies outside the range
    alone: on a sparse design the curved rule can win by a degenerate fit, and a planted
    linear law would then be called 'neither'; and on the exact quadratic problem over
    B = 4..64, slope 0.985, a saturating rule with its knee at B = 131 beat the power law by
    10 AICc. The other bend counts: the exact problem over B = 4..1024 (linear, then flat),
    150 trials, alpha 0.88 [0.85, 0.90] inside the linear margin, the curved rule best with
    its peak far beyond the range, the saturating rule 9 AICc behind it with its knee at
    B = 279, the linear rule 85 behind that: `inconclusive` (`linear_worse`) for ever
    before."""
    best = inf.best_model
    if best not in BENDS:
        return None
    inside = sorted(bends_inside(inf), key=lambda name: name != best)  # the best rule first
    return next(
        (b for b in inside if all(_clearly_worse(inf, rule, b) for rule in RULE_ALPHA)), None
    )


def _clearly_worse(inf: Inference, rule: str, than: str) -> bool:
    return rule in inf.rules and inf.rules[rule].aicc - inf.rules[than].aicc >= CLEAR_AICC


def _leaves_margins(lo: float, hi: float, reg: dict[str, tuple[float, float]]) -> bool:
    """Does [lo, hi] hold a value outside every margin?"""
    spans = sorted(reg.values())
    if lo < spans[0][0] or hi > spans[-1][1]:
        return True
    return any(
        lo < b2 and hi > b1 for (_, b1), (b2, _) in zip(spans, spans[1:], strict=False) if b1 < b2
    )


def _undecided(
    inf: Inference, margin: float, reason: str, cands: tuple[str, ...], half: float
) -> Decision:
    """What would decide it: the half-width at which alpha's interval fits in the region
    holding the estimate (interval width shrinks about as 1/sqrt(trials) and as 1/(log-range
    of batch sizes))."""
    alpha = float(inf.alpha)
    need = _room(alpha, margin)
    if reason.endswith("_worse") or reason == "bend_supported":
        need = None  # the interval is inside a margin already; the exact rule is rejected,
        # or a bend fits as well
    factor = rng_factor = None
    if need is not None and need > 0 and math.isfinite(half):
        factor = (half / need) ** 2
        rng_factor = half / need
    return Decision("inconclusive", reason, margin, cands, half, need, factor, rng_factor)


def _room(alpha: float, margin: float) -> float:
    """Distance from alpha to the nearest boundary of the region (a margin, or the space
    outside both) that holds it."""
    bounds = sorted(v for a in RULE_ALPHA.values() for v in (a - margin, a + margin))
    return min(abs(alpha - v) for v in bounds)
