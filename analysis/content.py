"""What the report says, as blocks (`analysis.render` turns them into Markdown and HTML).

blocks = report_blocks(analysis, figures)   # [("h1", ...), ("p", ...), ...]
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from analysis.basin import CUT_DECADES, CUT_NOISE
from analysis.compare import COINCIDE_TOL, RULE_TOL, RULES
from analysis.decision import CLEAR_AICC, SUPPORT_AICC, regions
from analysis.inference import (
    LOCAL_DECADES,
    LOCAL_MIN,
    LOCAL_NEAR,
    MIN_POINTS,
    PIN_PHASE,
    Inference,
)
from analysis.noise import comparison_text
from analysis.optimizers import optimizer_text
from analysis.pipeline import Analysis
from analysis.plotting import finite_or_none, fmt
from analysis.steps import critical_text, regimes_text, unreached_text
from analysis.verdict import alpha_text, warmup_text


def ci_text(lo: Any, hi: Any) -> str:
    """[lo, hi]; a one-sided interval as a bound (">= lo", "<= hi"); "-" when neither."""
    lo, hi = finite_or_none(lo), finite_or_none(hi)
    if lo is None and hi is None:
        return "-"
    if hi is None:
        return f">= {fmt(lo)}"
    if lo is None:
        return f"<= {fmt(hi)}"
    return f"[{fmt(lo)}, {fmt(hi)}]"


def best_table(a: Analysis) -> tuple[list[str], list[list[str]]]:
    head = [
        "batch size",
        "best lr",
        "95% CI",
        "edge",
        "n trials",
        "n diverged",
        "lrs tried",
        f"{a.metric} at best (model)",
        "divergence edge",
    ]
    rows = [
        [
            str(int(r["batch_size"])),
            fmt(r["lr"]) if not r["at_edge"] or r["fit"] == "model" else f"({fmt(r['lr'])})",
            ci_text(r["lr_ci_lo"], r["lr_ci_hi"]),
            "EDGE" if r["at_edge"] else "",
            str(int(r["n_trials"])),
            str(int(r["n_diverged"])),
            str(int(r["n_lrs"])),
            fmt(r["metric_best"], ".4g"),
            fmt(r["lr_div"]),
        ]
        for _, r in a.best.iterrows()
    ]
    factor = a.optimizer.effective_factor
    if a.optimizer.momentum is not None and factor is not None:
        head.insert(2, "effective lr lr/(1-m)")
        for row, (_, r) in zip(rows, a.best.iterrows(), strict=True):
            lr = finite_or_none(r["lr"])
            row.insert(2, fmt(None if lr is None else lr * factor))
    if a.objective == "steps_to_target":
        head.insert(6, "n not reached")
        for row, (_, r) in zip(rows, a.best.iterrows(), strict=True):
            row.insert(6, str(int(r.get("n_not_reached", 0) or 0)))
    return head, rows


def model_table(inf: Inference) -> tuple[list[str], list[list[str]]]:
    head = [
        "rule for the best lr",
        "parameters (whole model)",
        "fitted",
        "-2 log L",
        "AICc",
        "dAICc",
    ]
    if not inf.rules:
        return head, []
    delta = inf.aicc_delta()
    b0 = inf.min_batch
    lo, hi = inf.alpha_ci
    fitted = {
        "linear": f"lr(B={b0}) = {fmt(inf.lr_at('linear', b0))}",
        "sqrt": f"lr(B={b0}) = {fmt(inf.lr_at('sqrt', b0))}",
        "constant": f"lr = {fmt(inf.lr_at('constant', b0))} at every B (no lr change)",
        "power": f"alpha = {fmt(inf.alpha)} [{fmt(lo)}, {fmt(hi)}]",
        "saturating": _saturating_cell(inf),
        "curved": "peak at B = " + fmt(inf.peak_b) if inf.peak_b else "no peak inside",
    }
    rows = [
        [
            m + (" (best)" if m == inf.best_model else ""),
            str(r.k),
            fitted[m],
            fmt(-2 * r.loglik, ".1f"),
            fmt(r.aicc, ".1f"),
            fmt(delta[m], "+.1f"),
        ]
        for m, r in sorted(inf.rules.items(), key=lambda t: t[1].aicc)
    ]
    return head, rows


def _saturating_cell(inf: Inference) -> str:
    lo, hi = inf.b_noise_ci
    if inf.b_noise is None and inf.lr_max is None:
        return "linear limit (B_noise -> infinity)" + (f"; B_noise > {lo:.3g}" if lo else "")
    if inf.b_noise is None:
        return f"flat limit (B_noise -> 0), lr = {fmt(inf.lr_max)}"
    return f"lr_max = {fmt(inf.lr_max)}, B_noise = {fmt(inf.b_noise)} {ci_text(lo, hi)}"


def rule_tables(a: Analysis) -> tuple[list[str], list[list[str]], list[list[str]]]:
    t = a.rules
    head = ["batch size", "k", "best found", *RULES]
    vals, lrs = [], []
    for b, g in t.groupby("batch_size", sort=True):
        by = {r["rule"]: r for _, r in g.iterrows()}
        cell = [_value_cell(by[r]) for r in ("best", *RULES)]
        vals.append([str(int(b)), f"{g['k'].iloc[0]:g}", *cell])
        lrs.append(
            [str(int(b)), f"{g['k'].iloc[0]:g}", *[fmt(by[r]["lr"]) for r in ("best", *RULES)]]
        )
    return head, vals, lrs


def _value_cell(r: pd.Series) -> str:
    if finite_or_none(r["value"]) is None:
        return r["how"]
    return f"{r['value']:.4g}" + ("" if r["how"] in ("tried", "best tried") else f" ({r['how']})")


def warmup_rows(a: Analysis) -> tuple[list[str], list[list[str]]]:
    head = [
        "batch size",
        "best tried lr, no warmup",
        "best tried lr, warmup",
        f"best {a.metric}, none",
        f"best {a.metric}, warmup",
        "div. edge, none",
        "div. edge, warmup",
        "per-batch test p (Holm)",
    ]
    rows = []
    for _, r in a.warmup.iterrows():
        p = finite_or_none(r.get("p_holm"))
        rows.append(
            [
                str(int(r["batch_size"])),
                fmt(r["lr_best_tried_none"]),
                fmt(r["lr_best_tried_warm"]),
                fmt(r["metric_best_tried_none"], ".4g"),
                fmt(r["metric_best_tried_warm"], ".4g"),
                fmt(r["lr_div_none"]),
                fmt(r["lr_div_warm"]),
                "not testable" if p is None else f"{p:.3g}",
            ]
        )
    return head, rows


def curve_sentences(a: Analysis) -> list[str]:
    out = []
    for _, p in a.curves.panels.iterrows():
        verdict = "coincide" if p["coincide"] else "do not coincide"
        div = (
            f"; k with diverged trials: B = {', '.join(map(str, p['diverged_batches']))}"
            if p["diverged_batches"]
            else ""
        )
        out.append(
            f"Warmup {p['warmup_epochs']:g} epochs: the curves of {p['n_k']} values of k "
            f"{verdict}: final {a.curves.value} from {fmt(p['final_min'], '.4f')} to "
            f"{fmt(p['final_max'], '.4f')} (spread {fmt(p['spread'], '.4f')}, tolerance "
            f"{COINCIDE_TOL}){div}."
        )
    return out


def report_blocks(a: Analysis, figs: dict[str, Path]) -> list[tuple]:
    inf, v = a.inference, a.verdict
    direction = "maximised" if a.maximize else "minimised"
    blocks: list[tuple] = [
        ("h1", "How the best learning rate scales with batch size"),
        (
            "p",
            f"Results: `{a.results_dir}`. Metric: final `{a.metric}` ({direction}) at the "
            f"fixed epoch budget. Equivalence margin: +-{a.margin:g} around alpha = 1 "
            f"(linear) and 0.5 (sqrt).",
        ),
        ("h2", f"Verdict: {v.verdict}"),
        ("p", v.paragraph),
        ("p", "Piecewise view: " + v.linear_range),
    ]
    if v.notes:
        blocks.append(("ul", list(v.notes)))
    blocks += _calibration_blocks(inf)
    blocks += _optimizer_blocks(a)
    blocks += [("h2", "Data"), ("ul", a.load.lines() + _phase_line(a))]
    blocks += [
        ("h2", "Best learning rate per batch size"),
        ("table", *best_table(a)),
        (
            "p",
            "Best lr: the optimum mu_B of the model of all trials, with its profile-"
            "likelihood 95% interval. EDGE: the data bound the optimum on one side only (the "
            "best tried lr is the smallest or largest one tried, or the interval stays open "
            "within a decade beyond the lrs tried); such a value is a bound (>= or <=), "
            "shown in brackets when it is the best tried lr, and a batch size whose best "
            "tried lr is not flanked by worse ones is left out of the rule fits. Divergence "
            "edge: the smallest lr above the best one whose trial diverged.",
        ),
    ]
    blocks += _fig(figs, "metric_vs_lr", "metric against lr per batch size")
    blocks += [("h2", "Rules for the best lr")]
    if inf.rules:
        b = ", ".join(str(int(x)) for x in a.best.loc[a.best["in_fit"], "batch_size"])
        blocks += [
            ("table", *model_table(inf)),
            (
                "p",
                f"Each rule constrains mu(B) inside the same model of all {inf.n_model_trials} "
                f"finished trials at B = {b} (batch sizes whose optimum is flanked by worse "
                f"lrs{_pins_aside(a)}); AICc on the trials' likelihood, lower is better; a "
                f"difference of {CLEAR_AICC:g} or more counts as clearly better.",
            ),
        ]
    else:
        blocks.append(
            (
                "p",
                f"No rule was fitted: fewer than {MIN_POINTS} batch sizes have a located optimum.",
            )
        )
    blocks += _fig(figs, "best_lr_vs_batch", "best lr against batch size")
    blocks += _noise_blocks(a)
    blocks += _steps_blocks(a, figs)
    blocks += _rule_blocks(a, figs)
    blocks += _warmup_blocks(a, figs)
    blocks += [("h2", "Article experiment: learning curves of the linear-scaling grid")]
    if a.curves.panels.empty:
        blocks.append(("p", 'No phase-"grid" trials: the article experiment was not run.'))
    else:
        blocks.append(("ul", curve_sentences(a)))
    blocks += _fig(figs, "learning_curves", "learning curves of the linear-scaling grid")
    blocks += [("h2", "Method"), ("ul", method_lines(a))]
    return blocks


def _calibration_blocks(inf: Inference) -> list[tuple]:
    cal = inf.alpha_cal
    if inf.alpha is None:
        return []
    items = [alpha_text(inf) + "."]
    if cal is not None and inf.mu_cal is not None:
        mu = inf.mu_cal
        items.append(
            f"Per-batch intervals: the chi-square interval covered the planted optimum in "
            f"{mu.coverage:.0%} of the simulated cases"
            + (f"; widened {mu.width_factor:.2f}x" if mu.widened else "; not widened")
            + "."
        )
    return [("h2", "How sure: calibration on this sweep's design"), ("ul", items)]


def _optimizer_blocks(a: Analysis) -> list[tuple]:
    out: list[tuple] = [("h2", "Optimizer"), ("p", optimizer_text(a.optimizer, a.best))]
    if a.no_change is not None:
        out.append(
            ("p", f"No lr change needed (alpha = 0, the article's claim): {a.no_change.text}")
        )
    if a.decision.reason == "curved":
        out.append(
            (
                "p",
                f"Surge: the best lr peaks near B = {fmt(a.inference.peak_b)} and "
                f"falls after it (log-quadratic rule clearly better).",
            )
        )
    elif a.inference.n_points >= 4:
        out.append(("p", "Surge (best lr rising, then falling): not detected."))
    return out


def _noise_blocks(a: Analysis) -> list[tuple]:
    if a.noise is None:
        return []
    head = ["batch size", "best lr", "lr of the trial(s) used", "trials", "B_simple"]
    rows = [
        [
            str(int(r["batch_size"])),
            fmt(r["lr_best"]),
            fmt(r["lr_trial"]),
            str(int(r["n_trials"])),
            fmt(r["noise_scale"]),
        ]
        for _, r in a.noise.table.iterrows()
    ]
    inf = a.inference
    return [
        ("h2", "Gradient noise scale: measured against fitted"),
        ("p", comparison_text(a.noise, inf.b_noise, inf.b_noise_ci)),
        ("table", head, rows),
    ]


def _steps_blocks(a: Analysis, figs: dict[str, Path]) -> list[tuple]:
    if a.steps is None:
        return []
    t = a.steps.table
    head = ["batch size", "fewest steps", "at lr", "trials", "reached", "regime"]
    rows = [
        [
            str(int(r["batch_size"])),
            fmt(r["steps"], ".4g"),
            fmt(r["lr"]),
            str(int(r["n_trials"])),
            str(int(r["n_reached"])),
            r["regime"],
        ]
        for _, r in t.iterrows()
    ]
    target = f" ({a.steps.target})" if a.steps.target else ""
    out: list[tuple] = [
        ("h2", f"Steps to target{target} against batch size"),
        (
            "p",
            "Fewest optimizer steps to reach the target over the lrs tried, per batch size "
            "(seeds averaged; trials that never reached it left out). "
            + regimes_text(a.steps)
            + " "
            + critical_text(a.steps.critical),
        ),
        ("table", head, rows),
    ]
    never = unreached_text(a.steps)
    if never:
        out.append(("p", never))
    return out + _fig(figs, "steps_to_target", "steps to target against batch size")


def _phase_line(a: Analysis) -> list[str]:
    counts = a.trials["phase"].value_counts().sort_index()
    return ["trials per phase: " + ", ".join(f"{p} {n}" for p, n in counts.items())]


def _fig(figs: dict[str, Path], name: str, alt: str) -> list[tuple]:
    return [("img", figs[name], alt)] if name in figs else []


def _rule_blocks(a: Analysis, figs: dict[str, Path]) -> list[tuple]:
    out: list[tuple] = [("h2", "Rule table (in the style of Goyal et al. 2017, Table 2a)")]
    if a.rules.empty:
        return out + [("p", "Not available: no batch size has a finished trial.")]
    head, vals, lrs = rule_tables(a)
    out += [
        (
            "p",
            f"Final {a.metric} at each rule's lr. Anchor: {a.anchor.source}. A value is the "
            f"seed mean at a tried lr within {RULE_TOL} decades, else interpolated in log lr "
            f"between the tried lrs around it (interp.); 'diverged' when an lr at or below "
            f"it diverged; 'not tried' outside the searched range.",
        ),
        ("table", head, vals),
        ("p", "The learning rates those columns stand for:"),
        ("table", head, lrs),
    ]
    return out + _fig(figs, "rule_table", "rule table")


def _warmup_blocks(a: Analysis, figs: dict[str, Path]) -> list[tuple]:
    out: list[tuple] = [("h2", "Warmup")]
    wt = a.inference.warmup
    out.append(("p", warmup_text(wt, a.metric)))
    if not a.warmup.empty:
        out.append(("table", *warmup_rows(a)))
    return out + _fig(figs, "warmup", "warmup comparison")


def _pins_aside(a: Analysis) -> str:
    """', the 24 pin trials aside' when the sweep has pin trials (the rules leave them out)."""
    n = int((a.trials["phase"] == PIN_PHASE).sum()) if "phase" in a.trials.columns else 0
    return f"; the {n} pin trials aside" if n else ""


def _bottom_lines(a: Analysis) -> list[str]:
    """Which best lrs come from the bottom-of-basin fit (`analysis.inference._bottoms`)."""
    col = a.best.get("window_decades")
    if col is None:
        return []
    bottom = [int(b) for b, w in zip(a.best["batch_size"], col, strict=True) if w == LOCAL_DECADES]
    if not bottom:
        return []
    return [
        f"B = {', '.join(map(str, bottom))}: {LOCAL_MIN} trials or more within "
        f"{LOCAL_NEAR:g} decade of the optimum (the design loop's pin trials put them there), "
        f"so the best lr comes from the same model fitted within {LOCAL_DECADES:g} decade of "
        "basin, where a parabola describes even a basin that is not one over a decade; the "
        f"verdict keeps the {CUT_DECADES:g}-decade fit and does not use the pin trials."
    ]


def method_lines(a: Analysis) -> list[str]:
    reg = regions(a.margin)
    return [
        "One model of every finished trial, fitted by maximum likelihood: final metric = "
        "floor(B) + c * (log10 lr - mu(B))^2 + seed noise, with separate curvatures below and "
        "above the optimum (steeper towards divergence is allowed), curvatures and noise that "
        "may drift with log B, and warmup shifting the optimum and the floor. Seeds, warmups "
        "and repeated lrs all enter as individual trials: nothing is averaged or selected "
        "first, so a lucky seed or the better of two warmups cannot win by chance.",
        f"Only the bottom of each basin is modelled: a trial more than {CUT_DECADES:g} decade "
        f"of basin (at least {CUT_NOISE:g} noise sds) above its batch size's best value counts "
        "as 'worse than that level' (censored), not by its value; a diverged trial counts as "
        "worse than its finite neighbour below it in lr: neither dropped nor scored.",
        *_bottom_lines(a),
        "Intervals: profile likelihood (95%). Each is calibrated by simulating sweeps from the "
        "fitted model at exactly the lrs, warmups and batch sizes that were run (diverged runs "
        "stay diverged), refitting, and scaling the likelihood-ratio threshold by the mean "
        "statistic when it exceeds the chi-square value (a Bartlett correction): intervals are "
        "widened when they under-cover, never narrowed. Alpha's also holds the fit with the "
        "same seed noise at every batch size when the fitted noise drifts steeply with B.",
        "Rules for mu(B): linear (alpha = 1), sqrt (0.5), constant (0), free power law, "
        "saturating lr_max / (1 + B_noise / B) (McCandlish et al. 2018) and log-quadratic "
        "(rises then falls: the surge of Li et al. 2024), each fitted inside the same model and "
        "compared by AICc on the trials' likelihood.",
        f"Verdict by equivalence: linear only when alpha's interval lies inside "
        f"[{reg['linear'][0]:.2f}, {reg['linear'][1]:.2f}], the linear rule with its margin "
        f"(the better of the exact rule and the power law behind alpha) is not clearly worse "
        f"(AICc by {CLEAR_AICC:g}) than the best rule (the exact rule alone may be: alpha a "
        f"little off 1 is linear within the margin), and no rule that bends inside the "
        f"batch range (saturating knee, log-quadratic peak) is within {SUPPORT_AICC:g} AICc of "
        f"it; sqrt likewise inside "
        f"[{reg['sqrt'][0]:.2f}, {reg['sqrt'][1]:.2f}]; neither when the interval misses both "
        "margins, or the saturating (knee inside the range) or log-quadratic rule is clearly "
        "better; otherwise inconclusive, with what would decide it. An interval that merely "
        "contains 1 is not evidence for the linear rule.",
        "Warmup: one likelihood-ratio test of 'no warmup effect anywhere' against 'a shift of "
        "the optimum and the floor per batch size', then per batch size with Holm's "
        "adjustment.",
        "Noise scale: trials with measure_noise_scale estimate B_simple = tr(Sigma)/|G|^2 with "
        "the two-batch estimator; the report takes the final epoch's value at the trial "
        "nearest each best lr.",
    ]
