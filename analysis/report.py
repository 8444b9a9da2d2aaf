"""Turn an `Analysis` into files: figures/*.png, report.md, report.html, fit.json.

    >>> from analysis.pipeline import analyze
    >>> from analysis.report import write_report
    >>> paths = write_report(analyze("results/default"), "results/default/report")

`report.html` is self-contained (figures embedded as base64 PNG); `report.md` links to
`figures/`. `fit.json` holds exactly the keys of DESIGN.md ("Contracts") plus extras, with null
(never NaN) for what could not be computed. The figures come from `analysis.figures`.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis.best import WINDOW_DECADES
from analysis.compare import COINCIDE_TOL, RULE_TOL, RULES
from analysis.figures import finite_or_none, fmt, write_figures
from analysis.fit import (
    AIC_MARGIN,
    MAX_CI_WIDTH,
    MIN_POINTS,
    MODEL_K,
    SURGE_MIN_DROP,
    RuleFits,
    surge_text,
)
from analysis.noise import comparison_text
from analysis.optimizers import optimizer_text
from analysis.pipeline import Analysis
from analysis.steps import regimes_text, unreached_text


def _ci(lo: Any, hi: Any) -> str:
    if finite_or_none(lo) is None and finite_or_none(hi) is None:
        return "-"
    return f"[{fmt(lo)}, {fmt(hi)}]"


def jsonable(obj: Any) -> Any:
    """Plain JSON values: numpy scalars -> Python, NaN/inf -> None, tuples -> lists."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | np.ndarray):
        return [jsonable(v) for v in obj]
    if isinstance(obj, bool | np.bool_):
        return bool(obj)
    if isinstance(obj, int | np.integer):
        return int(obj)
    if isinstance(obj, float | np.floating):
        return finite_or_none(obj)
    if obj is None or obj is pd.NA or obj is pd.NaT:
        return None
    return obj


# ---------------------------------------------------------------- fit.json
def best_lr_records(best: pd.DataFrame, effective_factor: float | None = None) -> list[dict]:
    """fit.json's best_lr list: the DESIGN.md keys first, then extras."""
    out = []
    for _, r in best.iterrows():
        lr = finite_or_none(r["lr"])
        out.append(
            {
                "batch_size": int(r["batch_size"]),
                "lr": finite_or_none(r["lr"]),
                "lr_ci": [finite_or_none(r["lr_ci_lo"]), finite_or_none(r["lr_ci_hi"])],
                "at_edge": bool(r["at_edge"]),
                "n_trials": int(r["n_trials"]),
                "n_diverged": int(r["n_diverged"]),
                "n_lrs": int(r["n_lrs"]),
                "metric_best": finite_or_none(r["metric_best"]),
                "lr_best_tried": finite_or_none(r["lr_best_tried"]),
                "metric_best_tried": finite_or_none(r["metric_best_tried"]),
                "lr_div": finite_or_none(r["lr_div"]),
                "fit": r["fit"],
                "bootstrap": r["bootstrap"],
                "n_not_reached": int(r.get("n_not_reached", 0) or 0),
                "effective_lr": None if lr is None or effective_factor is None
                else lr * effective_factor,
            }
        )
    return out


def fit_json(a: Analysis) -> dict:
    """The fit.json document (see DESIGN.md "Contracts")."""
    f = a.fits
    models: dict[str, dict] = {m: {"aic": f.aic.get(m)} for m in ("linear", "sqrt", "power")}
    models["saturating"] = {
        "lr_max": f.lr_max,
        "b_noise": f.b_noise,
        "aic": f.aic.get("saturating"),
    }
    for m, d in models.items():
        d.update({"bic": f.bic.get(m), "chi2": f.chi2.get(m), "k": MODEL_K[m]})
    models["saturating"]["b_noise_ci"] = list(f.b_noise_ci)
    models["linear"]["lr_at_min_batch"] = _rule_lr_at_min(f, "linear")
    models["sqrt"]["lr_at_min_batch"] = _rule_lr_at_min(f, "sqrt")
    if "constant" in f.aic:  # "no lr change" (alpha = 0), fitted for adaptive optimizers
        models["constant"] = {"aic": f.aic["constant"], "bic": f.bic.get("constant"),
                              "chi2": f.chi2.get("constant"), "k": MODEL_K["constant"],
                              "lr_at_min_batch": _rule_lr_at_min(f, "constant")}
    doc = {
        "metric": a.metric,
        "best_lr": best_lr_records(a.best, a.optimizer.effective_factor),
        "power_law": {
            "alpha": f.alpha,
            "alpha_ci": list(f.alpha_ci),
            "lr_at_min_batch": f.lr_at_min_batch,
        },
        "models": models,
        "best_model": f.best_model,
        "verdict": a.verdict.verdict,
        # extras
        "maximize": a.maximize,
        "verdict_text": a.verdict.paragraph,
        "linear_range": a.verdict.linear_range,
        "notes": list(a.verdict.notes),
        "fit_batch_sizes": [int(b) for b in f.points["batch_size"]],
        "min_batch": f.min_batch,
        "c_hat": f.c_hat,
        "n_boot": a.n_boot,
        "rule_anchor": None
        if a.anchor is None
        else {"batch_size": a.anchor.batch, "lr": a.anchor.lr0, "source": a.anchor.source},
        "rule_table": a.rules.to_dict(orient="records"),
        "warmup": a.warmup.to_dict(orient="records"),
        "learning_curves": a.curves.panels.to_dict(orient="records"),
        "load": {k: v for k, v in vars(a.load).items()},
        "results_dir": a.results_dir,
        "objective": a.objective,
        "optimizer": {
            "name": a.optimizer.name,
            "momentum": a.optimizer.momentum,
            "effective_lr_factor": a.optimizer.effective_factor,
        },
        "no_lr_change": None if a.no_change is None
        else {"result": a.no_change.result, "text": a.no_change.text},
        "surge": surge_record(f),
        "measured_noise_scale": noise_record(a),
        "steps_to_target": steps_record(a),
    }
    return jsonable(doc)


def surge_record(f: RuleFits) -> dict:
    if f.surge is None:
        return {"detected": False}
    return {"detected": True, **vars(f.surge), "text": surge_text(f.surge)}


def noise_record(a: Analysis) -> dict | None:
    """fit.json's measured_noise_scale: B_simple at each batch size's best lr, and summary."""
    if a.noise is None:
        return None
    f = a.fits
    ratio = None if a.noise.median is None or f.b_noise is None else a.noise.median / f.b_noise
    return {
        "per_batch": a.noise.table.to_dict(orient="records"),
        "median": a.noise.median,
        "range": list(a.noise.range) if a.noise.range else None,
        "b_noise_fit": f.b_noise,
        "b_noise_fit_ci": list(f.b_noise_ci),
        "ratio_to_fit": ratio,
        "epoch": "final",
        "text": comparison_text(a.noise, f.b_noise, f.b_noise_ci),
    }


def steps_record(a: Analysis) -> dict | None:
    """fit.json's steps_to_target: the curve, its regimes and how they were found."""
    if a.steps is None:
        return None
    fit = a.steps.fit
    regimes = None
    if fit is not None:
        regimes = {
            "b_perfect_scaling_end": fit.b1 if fit.has_perfect else None,
            "b_plateau_start": fit.b2 if fit.has_plateau else None,
            "slope_mid": fit.slope_mid,
            "rmse_decades": fit.rmse,
            "text": regimes_text(a.steps),
        }
    return {
        "target": a.steps.target,
        "per_batch": a.steps.table.to_dict(orient="records"),
        "regimes": regimes,
    }


def _rule_lr_at_min(f: RuleFits, model: str) -> float | None:
    v = None if f.min_batch is None else f.lr_at(model, f.min_batch)
    return None if v is None else float(v)


# ---------------------------------------------------------------- tables
def best_table(a: Analysis) -> tuple[list[str], list[list[str]]]:
    head = [
        "batch size",
        "best lr",
        "95% CI",
        "edge",
        "n trials",
        "n diverged",
        "lrs tried",
        f"{a.metric} at best",
        "divergence edge",
    ]
    rows = [
        [
            str(int(r["batch_size"])),
            fmt(r["lr"]),
            _ci(r["lr_ci_lo"], r["lr_ci_hi"]),
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


def model_table(f: RuleFits) -> tuple[list[str], list[list[str]]]:
    head = ["model", "free parameters", "fitted", "chi2", "AIC", "dAIC"]
    if not f.aic:
        return head, []
    low = min(f.aic.values())
    fitted = {
        "linear": f"lr(B0={f.min_batch}) = {fmt(_rule_lr_at_min(f, 'linear'))}",
        "sqrt": f"lr(B0={f.min_batch}) = {fmt(_rule_lr_at_min(f, 'sqrt'))}",
        "constant": f"lr = {fmt(_rule_lr_at_min(f, 'constant'))} at every B (no lr change)",
        "power": f"alpha = {fmt(f.alpha)} [{fmt(f.alpha_ci[0])}, {fmt(f.alpha_ci[1])}]",
        "saturating": _saturating_cell(f),
    }
    rows = [
        [
            m + (" (best)" if m == f.best_model else ""),
            str(MODEL_K[m]),
            fitted[m],
            fmt(f.chi2[m]),
            fmt(f.aic[m], ".1f"),
            fmt(f.aic[m] - low, "+.1f"),
        ]
        for m in sorted(f.aic, key=f.aic.get)
    ]
    return head, rows


def _saturating_cell(f: RuleFits) -> str:
    lo, hi = f.b_noise_ci
    if f.b_noise is None and f.lr_max is None:
        return "linear limit (B_noise -> infinity)" + (f"; B_noise > {lo:.3g}" if lo else "")
    if f.b_noise is None:
        return f"flat limit (B_noise -> 0), lr = {fmt(f.lr_max)}"
    return f"lr_max = {fmt(f.lr_max)}, B_noise = {fmt(f.b_noise)} {_ci(lo, hi)}"


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
        "best lr, no warmup",
        "best lr, warmup",
        f"best {a.metric}, none",
        f"best {a.metric}, warmup",
        "div. edge, none",
        "div. edge, warmup",
        "finding",
    ]
    rows = []
    for _, r in a.warmup.iterrows():

        def lr_cell(s: str, r=r) -> str:
            flag = r[f"at_edge_{s}"]
            edge = " EDGE" if pd.notna(flag) and bool(flag) else ""
            return f"{fmt(r[f'lr_{s}'])} {_ci(r[f'lr_ci_lo_{s}'], r[f'lr_ci_hi_{s}'])}{edge}"

        rows.append(
            [
                str(int(r["batch_size"])),
                lr_cell("none"),
                lr_cell("warm"),
                fmt(r["metric_best_tried_none"], ".4g"),
                fmt(r["metric_best_tried_warm"], ".4g"),
                fmt(r["lr_div_none"]),
                fmt(r["lr_div_warm"]),
                r["finding"],
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


# ---------------------------------------------------------------- documents
def _blocks(a: Analysis, figs: dict[str, Path]) -> list[tuple]:
    f, v = a.fits, a.verdict
    direction = "maximised" if a.maximize else "minimised"
    blocks: list[tuple] = [
        ("h1", "How the best learning rate scales with batch size"),
        (
            "p",
            f"Results: `{a.results_dir}`. Metric: final `{a.metric}` ({direction}) at the "
            f"fixed epoch budget. Bootstrap resamples: {a.n_boot}.",
        ),
        ("h2", f"Verdict: {v.verdict}"),
        ("p", v.paragraph),
        ("p", "Piecewise view: " + v.linear_range),
    ]
    if v.notes:
        blocks.append(("ul", list(v.notes)))
    blocks += _optimizer_blocks(a)
    blocks += [("h2", "Data"), ("ul", a.load.lines() + _phase_line(a))]
    blocks += [
        ("h2", "Best learning rate per batch size"),
        ("table", *best_table(a)),
        (
            "p",
            "EDGE: the best tried lr is the smallest or largest feasible lr (or fewer "
            "than three lrs were tried), so the optimum is not located: the value is a "
            "bound, shown for information and left out of the rule fits. Divergence "
            "edge: the smallest lr above the best one whose trial diverged.",
        ),
    ]
    blocks += _fig(figs, "metric_vs_lr", "metric against lr per batch size")
    blocks += [("h2", "Rule fits")]
    if f.aic:
        blocks += [
            ("table", *model_table(f)),
            (
                "p",
                f"Fitted on B = {', '.join(str(int(b)) for b in f.points['batch_size'])} "
                f"(located optima only), weighted by each best lr's CI. AIC = chi2/c + 2k "
                f"with overdispersion c = {f.c_hat:.2f}; a two-parameter model must beat "
                f"the best one-parameter model by {AIC_MARGIN:g} to be preferred.",
            ),
        ]
    else:
        blocks.append(
            ("p", "No rule was fitted: fewer than two batch sizes have a located optimum.")
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
    blocks += [("h2", "Method"), ("ul", _method_lines())]
    return blocks


def _optimizer_blocks(a: Analysis) -> list[tuple]:
    out: list[tuple] = [("h2", "Optimizer"), ("p", optimizer_text(a.optimizer, a.best))]
    if a.no_change is not None:
        out.append(("p", f"No lr change needed (alpha = 0, the article's claim): "
                         f"{a.no_change.text}"))
    if a.fits.surge is not None:
        out.append(("p", "Surge: " + surge_text(a.fits.surge)))
    elif a.fits.n_points >= 5:
        out.append(("p", "Surge (best lr rising, then falling): not detected."))
    return out


def _noise_blocks(a: Analysis) -> list[tuple]:
    if a.noise is None:
        return []
    head = ["batch size", "best lr", "lr of the trial(s) used", "trials", "B_simple"]
    rows = [
        [str(int(r["batch_size"])), fmt(r["lr_best"]), fmt(r["lr_trial"]),
         str(int(r["n_trials"])), fmt(r["noise_scale"])]
        for _, r in a.noise.table.iterrows()
    ]
    return [
        ("h2", "Gradient noise scale: measured against fitted"),
        ("p", comparison_text(a.noise, a.fits.b_noise, a.fits.b_noise_ci)),
        ("table", head, rows),
    ]


def _steps_blocks(a: Analysis, figs: dict[str, Path]) -> list[tuple]:
    if a.steps is None:
        return []
    t = a.steps.table
    head = ["batch size", "fewest steps", "at lr", "trials", "reached", "regime"]
    rows = [
        [str(int(r["batch_size"])), fmt(r["steps"], ".4g"), fmt(r["lr"]),
         str(int(r["n_trials"])), str(int(r["n_reached"])), r["regime"]]
        for _, r in t.iterrows()
    ]
    target = f" ({a.steps.target})" if a.steps.target else ""
    out: list[tuple] = [
        ("h2", f"Steps to target{target} against batch size"),
        ("p", "Fewest optimizer steps (at epoch granularity) to reach the target over the lrs "
              "tried, per batch size (seeds averaged; trials that never reached it are "
              "infeasible). " + regimes_text(a.steps)),
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
            f"between the tried lrs around it (interp.); 'diverged' when an lr at or below it "
            f"diverged; 'not tried' outside the searched range.",
        ),
        ("table", head, vals),
        ("p", "The learning rates those columns stand for:"),
        ("table", head, lrs),
    ]
    return out + _fig(figs, "rule_table", "rule table")


def _warmup_blocks(a: Analysis, figs: dict[str, Path]) -> list[tuple]:
    out: list[tuple] = [("h2", "Warmup")]
    if a.warmup.empty:
        return out + [
            ("p", "Not compared: the trials do not include both warmup 0 and warmup > 0.")
        ]
    moved = a.warmup["finding"].str.contains("moved the optimum").sum()
    edge = a.warmup["finding"].str.contains("raised the divergence edge|lowered", regex=True).sum()
    out += [
        ("table", *warmup_rows(a)),
        (
            "p",
            f"Warmup moved the optimum (disjoint CIs) at {moved} of {len(a.warmup)} batch "
            f"sizes and moved the divergence edge at {edge}.",
        ),
    ]
    return out + _fig(figs, "warmup", "warmup comparison")


def _method_lines() -> list[str]:
    return [
        "Best lr of a batch size: final metric averaged over seeds per (lr, warmup); at every "
        "lr the better warmup counts (warmup is a nuisance parameter); a parabola in log10 lr "
        f"through the tried lrs around the best one (at most {WINDOW_DECADES:g} decade away, "
        "weighted by seeds) gives the estimate below grid resolution. Without a usable "
        "parabola the best tried lr is used and its CI spans the tried lrs on both sides.",
        "95% CI: percentile bootstrap over the trials of the batch size (every resample "
        "repeats the whole estimate, including which lr is best).",
        "Diverged trials (or a non-finite metric) are infeasible: excluded from the estimate, "
        "counted, and used for the divergence edge. A best lr that is not bracketed by feasible "
        "trials on both sides is flagged EDGE and left out of the rule fits.",
        "Rule fits on log10 lr*: linear (alpha = 1), sqrt (alpha = 0.5), free power law, "
        "saturating lr_max / (1 + B_noise / B) (McCandlish et al. 2018); least squares weighted "
        "by each best lr's CI; alpha's CI uses Student's t and the scatter of the points when "
        f"it exceeds their CIs; AIC comparison, an extra parameter must gain {AIC_MARGIN:g}.",
        "Verdict: linear / sqrt only when the alpha CI contains that exponent, excludes the "
        f"other and is at most {MAX_CI_WIDTH:g} wide; neither when the saturating rule is the "
        "best model or the CI excludes both; inconclusive otherwise, and always when fewer "
        f"than {MIN_POINTS} batch sizes have a located optimum.",
        "Adam / AdamW: a fifth model, constant lr (alpha = 0, 'no lr change needed'), is fitted "
        "and judged like the fixed rules (supported when the alpha CI contains 0, excludes 0.5 "
        f"and 1 and is at most {MAX_CI_WIDTH:g} wide).",
        "Surge (any optimizer): a parabola in log10 lr* against log10 B beats every monotone "
        f"rule by {AIC_MARGIN:g} AIC, peaks inside the batch range and its fitted lr* falls "
        f"by at least {SURGE_MIN_DROP:g} decades after the peak (rises by half that before "
        "it); the verdict is then 'neither'.",
        "Noise scale: trials with measure_noise_scale estimate B_simple = tr(Sigma)/|G|^2 "
        "with the two-batch estimator (the step's gradient at B and one at 16B at the same "
        "weights, EMAs of the unbiased |G|^2 and tr(Sigma) estimates, then their ratio); the "
        "report takes the final epoch's value at the trial nearest each best lr.",
    ]


def render_markdown(blocks: list[tuple], base: Path) -> str:
    out = []
    for kind, *rest in blocks:
        if kind == "h1":
            out.append(f"# {rest[0]}")
        elif kind == "h2":
            out.append(f"## {rest[0]}")
        elif kind == "p":
            out.append(rest[0])
        elif kind == "ul":
            out.append("\n".join(f"- {item}" for item in rest[0]))
        elif kind == "table":
            head, rows = rest
            lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
            lines += ["| " + " | ".join(c.replace("|", "/") for c in r) + " |" for r in rows]
            out.append("\n".join(lines))
        elif kind == "img":
            out.append(f"![{rest[1]}]({rest[0].relative_to(base).as_posix()})")
    return "\n\n".join(out) + "\n"


CSS = (
    "body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;"
    "line-height:1.45}table{border-collapse:collapse;margin:1em 0;font-size:90%}"
    "td,th{border:1px solid #bbb;padding:3px 8px;text-align:right}th{background:#eee}"
    "img{max-width:100%;border:1px solid #ddd}code{background:#f4f4f4}"
)


def render_html(blocks: list[tuple]) -> str:
    out = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        "<title>lr vs batch size report</title>",
        f"<style>{CSS}</style></head><body>",
    ]
    for kind, *rest in blocks:
        if kind in ("h1", "h2"):
            out.append(f"<{kind}>{html.escape(rest[0])}</{kind}>")
        elif kind == "p":
            out.append(f"<p>{_inline(rest[0])}</p>")
        elif kind == "ul":
            out.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in rest[0]) + "</ul>")
        elif kind == "table":
            head, rows = rest
            th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
            trs = "".join(
                "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows
            )
            out.append(f"<table><tr>{th}</tr>{trs}</table>")
        elif kind == "img":
            data = base64.b64encode(rest[0].read_bytes()).decode("ascii")
            out.append(
                f"<p><img alt='{html.escape(rest[1])}' src='data:image/png;base64,{data}'></p>"
            )
    out.append("</body></html>")
    return "\n".join(out)


def _inline(text: str) -> str:
    """Escape, then render `code` spans."""
    parts = html.escape(text).split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


def write_report(
    a: Analysis, out_dir: str | Path, json_path: str | Path | None = None
) -> dict[str, Path]:
    """Write figures/, report.md, report.html and fit.json; returns what was written."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    figs = write_figures(a, out / "figures")
    blocks = _blocks(a, figs)
    (out / "report.md").write_text(render_markdown(blocks, out), encoding="utf-8")
    (out / "report.html").write_text(render_html(blocks), encoding="utf-8")
    jpath = Path(json_path) if json_path else out / "fit.json"
    jpath.parent.mkdir(parents=True, exist_ok=True)
    jpath.write_text(json.dumps(fit_json(a), indent=2, allow_nan=False) + "\n", encoding="utf-8")
    return {
        "report.md": out / "report.md",
        "report.html": out / "report.html",
        "fit.json": jpath,
        **{f"figures/{k}.png": p for k, p in figs.items()},
    }
