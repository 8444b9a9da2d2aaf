"""The words of the verdict: what was decided, on what evidence, and what would decide it.

Numbers come from `analysis.inference` (the fitted model) and `analysis.decision` (the
equivalence decision); this module only writes sentences about them.

    v = explain(inf, decide(inf))
    v.verdict, v.paragraph, v.linear_range, v.notes
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from analysis.decision import (
    CLEAR_AICC,
    MIN_RESID_DF,
    SUPPORT_AICC,
    Decision,
    regions,
    rejecting_bend,
)
from analysis.inference import MIN_POINTS, Inference

LINEAR_SLOPE = 0.8  # the linear rule "holds" while the saturating rule's local slope >= this


@dataclass(frozen=True)
class Verdict:
    """The answer, the paragraph that explains it, and the extra statements of the report."""

    verdict: str  # linear | sqrt | neither | inconclusive
    paragraph: str
    linear_range: str  # piecewise view: where the linear rule holds, the critical batch size
    notes: tuple[str, ...] = ()  # warnings (knee) and what to run next


def fmt_b(value: float | None) -> str:
    return "?" if value is None else f"{value:.3g}"


def _num(v: float | None, spec: str = ".2f") -> str:
    return "unbounded" if v is None or not math.isfinite(v) else format(v, spec)


def alpha_text(inf: Inference) -> str:
    lo, hi = inf.alpha_ci
    cal = inf.alpha_cal
    how = ""
    if cal is not None and cal.replicates:
        how = (
            f"; the chi-square interval covered {cal.coverage:.0%} of {cal.replicates} "
            f"sweeps simulated on this design"
            + (f", so it was widened {cal.width_factor:.2f}x" if cal.widened else "")
        )
    return f"alpha = {inf.alpha:.2f} (95% CI {_num(lo)} to {_num(hi)}{how})"


def aicc_text(inf: Inference) -> str:
    d = inf.aicc_delta()
    return "AICc relative to the best rule: " + ", ".join(
        f"{m} {v:+.1f}" for m, v in sorted(d.items(), key=lambda t: t[1])
    )


def linear_range_text(inf: Inference) -> str:
    """Piecewise view from the saturating fit: where lr* is still linear in B, and B_noise."""
    if inf.batch_range is None or inf.n_points < MIN_POINTS or "saturating" not in inf.rules:
        return "Not estimated: too few batch sizes with a located optimum."
    b_lo, b_hi = inf.batch_range
    lo, hi = inf.b_noise_ci
    if inf.b_noise is None and inf.lr_max is None:
        bound = f"; B_noise > {lo:.3g} (95%)" if lo else ""
        return (
            f"No saturation detected: the saturating fit runs to its linear limit over "
            f"B = {b_lo}..{b_hi}{bound}."
        )
    if inf.b_noise is None:
        return (
            f"The saturating fit runs to a constant lr (B_noise -> 0): no linear regime is "
            f"visible over B = {b_lo}..{b_hi}."
        )
    knee = inf.b_noise * (1 - LINEAR_SLOPE) / LINEAR_SLOPE
    ci = f"95% CI {fmt_b(lo)} to {fmt_b(hi)}".replace("?", "unbounded")
    if knee < b_lo:
        where = f"below the smallest batch size measured ({b_lo})"
    elif knee >= b_hi:
        where = f"over the whole measured range B = {b_lo}..{b_hi}"
    else:
        where = f"for B <= {knee:.3g} (measured from {b_lo})"
    return (
        f"Critical batch size (saturating fit) B_noise = {inf.b_noise:.3g} ({ci}). The linear "
        f"rule holds (local log-log slope >= {LINEAR_SLOPE}, i.e. B <= B_noise/4) {where}; "
        f"beyond B_noise the best lr flattens towards lr_max = {fmt_b(inf.lr_max)}."
    )


def knee_note(inf: Inference) -> str | None:
    if inf.b_noise is None or inf.batch_range is None or inf.alpha is None:
        return None
    b_lo, b_hi = inf.batch_range
    if not b_lo <= inf.b_noise <= b_hi:
        return None
    return (
        f"The batch range {b_lo}..{b_hi} spans the saturating fit's knee (B_noise = "
        f"{inf.b_noise:.3g}): there the local log-log slope is exactly 1/2, so a single power "
        f"law fitted across the knee can read about 0.5 by accident ({alpha_text(inf)})."
    )


def _too_few_text(inf: Inference) -> str:
    t = inf.table
    if t.empty:
        return "Inconclusive: no finished trial."
    n_edge = int((~t["in_fit"]).sum())
    if bool((t["n_feasible"] == 0).all()):
        return (
            "Inconclusive: every finished trial diverged (or has no finite metric), so no "
            "optimum can be located; search lower learning rates."
        )
    if n_edge == 0:
        return (
            f"Inconclusive: only {len(t)} batch size(s) were run; at least {MIN_POINTS} with "
            f"a located optimum are needed to fit and compare the rules."
        )
    text = (
        f"Inconclusive: the optimum was not located for {n_edge} of {len(t)} batch sizes "
        f"(their best tried lr is the smallest or largest one tried); only {inf.n_points} "
        f"have a best lr with worse lrs on both sides (at least {MIN_POINTS} are needed), "
        f"so no rule is fitted."
    )
    if bool(((t["n_lrs"] <= 1) & (t["n_diverged"] == 0)).all()):
        text += (
            " Only one lr was tried per batch size: a grid that already follows the linear "
            "rule cannot confirm it."
        )
    return text


def what_to_run(inf: Inference, dec: Decision) -> str:
    """What more would decide an inconclusive verdict."""
    t = inf.table
    if dec.reason == "too_few":
        n_edge = int((~t["in_fit"]).sum()) if len(t) else 0
        if n_edge == 0:
            return (
                f"Run at least {MIN_POINTS} batch sizes (better 5 or more, over a factor of "
                f"30 or more), each with lrs on both sides of its optimum."
            )
        return (
            f"Search lrs on both sides of the current best for every batch size (the "
            f"Optuna phase, or grid.lr_multipliers such as [0.25, 0.5, 1, 2, 4]) until each "
            f"best lr has worse lrs on both sides, for at least {MIN_POINTS} batch sizes."
        )
    if dec.reason == "few_in_basin":
        return (
            "Run more trials inside the basins (lrs within a few tenths of a decade of each "
            "batch size's best, on both sides), until the trials there outnumber the model's "
            f"parameters by {MIN_RESID_DF} or more."
        )
    if dec.reason == "unsettled":
        return (
            "Run more trials on both flanks of every batch size's best lr (about a third of "
            "a decade out on each side), with new seeds, until the fit settles."
        )
    if dec.reason.endswith("_worse"):
        rule = dec.reason.split("_")[0]
        return (
            f"alpha lies inside the {rule} margin (+-{dec.margin:g}) but the power law "
            f"behind it is clearly worse than the best rule (AICc > {CLEAR_AICC:g}): the best "
            f"lr bends where a power law cannot. Add batch sizes where the best rule and the "
            f"power law part, and read the best rule's shape."
        )
    if dec.reason == "bend_supported":
        return (
            f"alpha lies inside the {dec.candidates[0]} margin (+-{dec.margin:g}), but a rule "
            f"that bends inside the batch range fits about as well (AICc within "
            f"{SUPPORT_AICC:g}): pin the optima of the largest batch sizes (more trials on "
            f"both flanks of their basins, new seeds), or extend the range beyond the bend."
        )
    if dec.needed_half_width is None or dec.trials_factor is None:
        return "The alpha interval is open on one side: locate the optimum of more batch sizes."
    b_lo, b_hi = inf.batch_range
    wider = b_lo * (b_hi / b_lo) ** dec.range_factor if dec.range_factor else None
    cands = " vs ".join(dec.candidates)
    if dec.needed_half_width < 0.02:
        return (
            f"alpha = {inf.alpha:.2f} sits within {dec.needed_half_width:.2f} of a margin "
            f"boundary ({cands}): no affordable sweep decides it; choose the margin "
            f"(--margin) with that in mind."
        )
    return (
        f"Deciding {cands}: the interval's half-width is {dec.half_width:.2f} and must fall "
        f"to about {dec.needed_half_width:.2f}. That takes about {dec.trials_factor:.1f}x the "
        f"trials at these batch sizes (more seeds and lrs near each optimum), or a batch range "
        f"about {dec.range_factor:.1f}x wider in log scale"
        + (f" (B = {b_lo}..{wider:.0f})" if wider else "")
        + "."
    )


def noise_note(inf: Inference) -> str | None:
    """Says when alpha's interval was widened for a steep drift of the seed noise with B."""
    if inf.alpha_ci_same_noise is None or inf.noise_drift is None:
        return None
    lo, hi = inf.alpha_ci_same_noise
    same = f"[{_num(lo)}, {_num(hi)}]"
    drift = inf.noise_drift if inf.noise_drift >= 1 else 1 / inf.noise_drift
    end = "largest" if inf.noise_drift >= 1 else "smallest"
    return (
        f"The fitted seed noise is {drift:.0f}x larger at the {end} batch size than at the "
        f"other end: a fit can explain its misfit so. Alpha's interval therefore also holds "
        f"the fit with the same noise at every batch size, {same}; the verdict must hold "
        "under both."
    )


def explain(inf: Inference, dec: Decision) -> Verdict:
    """The verdict paragraph, the piecewise view and the notes."""
    linear_range = linear_range_text(inf)
    knee = knee_note(inf)
    if dec.reason == "too_few":
        return Verdict("inconclusive", _too_few_text(inf), linear_range, (what_to_run(inf, dec),))
    if dec.reason == "few_in_basin":
        text = (
            "Inconclusive: too few trials lie inside the basins (near each best lr) to "
            f"measure the seed noise: {inf.resid_df} beyond the model's parameters, "
            f"{MIN_RESID_DF} needed. With fewer, the fitted noise can collapse and every "
            f"interval with it (alpha = {inf.alpha:.3g}, not yet evidence)."
        )
        return Verdict("inconclusive", text, linear_range, (what_to_run(inf, dec),))
    if dec.reason == "unsettled":
        text = (
            f"Inconclusive: the fit of the power law did not settle (alpha = {inf.alpha:.3g}): "
            "the trials do not pin the basins well enough for the rules to be compared."
        )
        return Verdict("inconclusive", text, linear_range, (what_to_run(inf, dec),))
    b_lo, b_hi = inf.batch_range
    span = f"over B = {b_lo}..{b_hi} ({inf.n_points} batch sizes with a located optimum)"
    evidence = f"{alpha_text(inf)}; {aicc_text(inf)}."
    notes = tuple(n for n in (knee, noise_note(inf)) if n)
    reg = regions(dec.margin)
    margin_text = {r: f"[{a:.2f}, {b:.2f}]" for r, (a, b) in reg.items()}
    if dec.reason == "saturating":
        text = (
            f"Neither rule: the best lr saturates {span}. The saturating rule lr* = lr_max / "
            f"(1 + B_noise / B) fits clearly better (AICc lower by {CLEAR_AICC:g} or more) than "
            f"any power law, with its knee B_noise = {fmt_b(inf.b_noise)} inside the range: "
            f"linear well below B_noise, flat above. {evidence}"
        )
        return Verdict("neither", text, linear_range, notes)
    if dec.reason == "curved":
        text = (
            f"Neither rule {span}: the best lr rises and then falls (peak near B = "
            f"{fmt_b(inf.peak_b)}, the 'surge' of Li et al. 2024); a log-quadratic rule fits "
            f"clearly better than every monotone one. {evidence}"
        )
        return Verdict("neither", text, linear_range, notes)
    if dec.reason == "rejected":
        shape = {
            "saturating": "saturating lr_max / (1 + B_noise / B)",
            "curved": "log-quadratic (rises, then falls)",
        }
        best, bend = inf.best_model, rejecting_bend(inf)
        if bend == best:
            against = "it"
        else:  # the best bend's feature lies outside the range; this one's inside
            where = (
                f"knee B_noise = {fmt_b(inf.b_noise)}"
                if bend == "saturating"
                else f"peak near B = {fmt_b(inf.peak_b)}"
            )
            if best == "curved":  # its peak lies beyond the range: it does not fall here
                shape["curved"] = "log-quadratic"
            against = f"the {shape[bend]} rule, whose {where} lies inside the range"
        text = (
            f"Neither rule {span}: the {shape[best]} rule fits best, and the linear and sqrt "
            f"rules are each clearly worse than {against} (AICc higher by {CLEAR_AICC:g} or "
            f"more); a single power law's alpha is only the average slope of a bend here. "
            f"{evidence}"
        )
        return Verdict("neither", text, linear_range, notes)
    if dec.reason in ("inside_linear", "inside_sqrt"):
        rule = dec.reason.split("_")[1]
        name = {"linear": "Linear rule", "sqrt": "Square-root rule"}[rule]
        text = (
            f"{name} supported {span}: alpha's 95% interval lies inside the equivalence margin "
            f"{margin_text[rule]} (+-{dec.margin:g}), and the {rule} rule with its margin "
            f"(the exact rule or the power law behind alpha) is not clearly worse than the best "
            f"rule. {evidence}"
        )
        return Verdict(rule, text, linear_range, notes)
    if dec.reason == "outside":
        zero = inf.alpha_ci[0] is not None and inf.alpha_ci[0] <= 0.0 <= (inf.alpha_ci[1] or 0)
        kind = (
            "the best lr does not change with batch size (alpha = 0 is inside the interval)"
            if zero
            else "alpha lies outside both equivalence margins"
        )
        text = (
            f"Neither rule {span}: {kind}; linear needs {margin_text['linear']}, sqrt needs "
            f"{margin_text['sqrt']}. {evidence}"
        )
        return Verdict("neither", text, linear_range, notes)
    text = (
        f"Inconclusive {span}: alpha's interval still allows {', '.join(dec.candidates)} "
        f"(equivalence margins: linear {margin_text['linear']}, sqrt {margin_text['sqrt']}). "
        f"{evidence}"
    )
    if dec.reason.endswith("_worse"):
        rule = dec.reason.split("_")[0]
        text = (
            f"Inconclusive {span}: alpha's interval lies inside the {rule} margin "
            f"{margin_text[rule]}, but the power law behind it is clearly worse than the best "
            f"rule, a shape that bends. {evidence}"
        )
    if dec.reason == "bend_supported":
        rule = dec.candidates[0]
        text = (
            f"Inconclusive {span}: alpha's interval lies inside the {rule} margin "
            f"{margin_text[rule]}, but a rule that bends inside the range (a knee or a peak) "
            f"fits about as well, so the power law behind alpha may not hold. {evidence}"
        )
    return Verdict("inconclusive", text, linear_range, (*notes, what_to_run(inf, dec)))


def no_change_text(inf: Inference) -> tuple[str, str]:
    """The article's claim for Adam, 'no lr change needed' (alpha = 0): (result, sentence)."""
    if inf.alpha is None or "constant" not in inf.rules:
        return "inconclusive", (
            f"Not tested: fewer than {MIN_POINTS} batch sizes have a located optimum."
        )
    lo, hi = inf.alpha_ci
    lo = -math.inf if lo is None else lo
    hi = math.inf if hi is None else hi
    d = inf.aicc_delta()["constant"]
    ev = f"{alpha_text(inf)}; the constant rule is {d:+.1f} AICc from the best"
    if not lo <= 0.0 <= hi:
        return "rejected", f"Rejected: the best lr changes with batch size ({ev})."
    if hi - lo <= 0.4 and not lo <= 0.5 <= hi:
        return "supported", f"Supported: alpha's interval holds 0 and excludes 0.5 and 1 ({ev})."
    return "inconclusive", f"Inconclusive: the interval holds 0 but is too wide ({ev})."


def warmup_text(wt, metric: str) -> str:
    """One paragraph on the joint warmup test."""
    if wt is None:
        return "Not tested: the trials do not include two warmup values."
    parts = []
    for w, m, (mlo, mhi), f, (flo, fhi) in zip(
        wt.levels, wt.shift_mu, wt.shift_mu_ci, wt.shift_floor, wt.shift_floor_ci, strict=True
    ):
        parts.append(
            f"warmup {w:g} against {wt.reference:g} epochs moves the best lr by {m:+.2f} decades "
            f"(95% CI {_num(mlo, '+.2f')} to {_num(mhi, '+.2f')}, x{10**m:.2f}) and the "
            f"floor of {metric} by {f:+.4f} (95% CI {_num(flo, '+.4f')} to {_num(fhi, '+.4f')})"
        )
    joint = (
        f"Joint test (any warmup effect at any batch size, likelihood ratio "
        f"{wt.joint_stat:.1f} on {wt.joint_df} df): p = {wt.joint_p:.3g}, "
        + ("warmup matters." if wt.matters else "no evidence that warmup matters.")
    )
    pb = wt.per_batch
    if isinstance(pb, pd.DataFrame) and len(pb):
        sig = pb[pb["significant"]]
        joint += (
            " Per batch size (Holm-adjusted over "
            f"{len(pb)}): "
            + (
                ", ".join(
                    f"B = {int(r.batch_size)} (p = {r.p_holm:.3g})" for r in sig.itertuples()
                )
                if len(sig)
                else "none significant"
            )
            + "."
        )
    return "Shared effect: " + "; ".join(parts) + ". " + joint
