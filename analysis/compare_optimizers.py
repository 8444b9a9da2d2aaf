"""One report comparing the sweeps of several optimizers (e.g. SGD and Adam) on the same task.

    python -m analysis.compare_optimizers --results DIR_A DIR_B [DIR ...] --out DIR
        [--labels A B ...] [--metric val_loss] [--objective metric|steps_to_target]
        [--margin 0.2] [--n-boot 200] [--seed 0]

Every results folder is analysed as `python -m analysis.fit_rule` does (its full report goes
to `OUT/<label>/`); then `OUT/compare.md`, a self-contained `OUT/compare.html`,
`OUT/compare.json` and `OUT/figures/` put them side by side: the best lr against batch size of
every optimizer on one figure (with its power-law fit), a table with each one's alpha, best
model, verdict, "no lr change" test (Adam), surge, fitted B_noise and measured B_simple, and,
when the sweeps had a target, their steps-to-target curves on one figure. `make compare` runs
an SGD and an Adam sweep on the same data and model and then this.

Labels default to the optimizer named in each folder's params.json. Bad input (a missing or
empty folder, no finished trial, fewer than two folders) prints one line and exits with code 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from analysis.load import AnalysisError, error_exit
from analysis.noise import comparison_text
from analysis.pipeline import Analysis, analyze
from analysis.plotting import DPI, alpha_fan, batch_axes, draw_best_lrs, draw_rule, fmt, new_figure
from analysis.render import render_html, render_markdown
from analysis.report import write_report
from analysis.schema import jsonable
from analysis.steps import regimes_text

MARKERS = ("o", "s", "^", "D", "v", "P")


@dataclass(frozen=True)
class Entry:
    label: str
    analysis: Analysis
    report_dir: Path


def default_labels(analyses: list[Analysis]) -> list[str]:
    """The optimizer of each sweep, made unique ('adam', 'adam-2', ...)."""
    labels: list[str] = []
    for a in analyses:
        base = a.optimizer.name
        label, k = base, 2
        while label in labels:
            label, k = f"{base}-{k}", k + 1
        labels.append(label)
    return labels


def _task(a: Analysis) -> str:
    t = a.trials
    parts = [
        ", ".join(sorted({str(v) for v in t[c].dropna()}))
        for c in ("dataset", "model")
        if c in t.columns
    ]
    return " / ".join(parts) if parts else "unknown"


def summary_rows(entries: list[Entry]) -> tuple[list[str], list[list[str]]]:
    head = [
        "sweep",
        "optimizer",
        "data / model",
        "trials",
        "batch sizes fitted",
        "alpha [95% CI]",
        "best model",
        "verdict",
        "no lr change (alpha = 0)",
        "surge",
        "fitted B_noise",
        "measured B_simple (median)",
    ]
    rows = []
    for e in entries:
        a, inf = e.analysis, e.analysis.inference
        lo, hi = inf.alpha_ci
        alpha = (
            f"{inf.alpha:.2f} [{fmt(lo, '.2f')}, {fmt(hi, '.2f')}]"
            if inf.alpha is not None
            else "-"
        )
        fitted = a.best.loc[a.best["in_fit"], "batch_size"]
        rows.append(
            [
                e.label,
                a.optimizer.describe(),
                _task(a),
                str(len(a.trials)),
                ", ".join(str(int(b)) for b in fitted) or "-",
                alpha,
                inf.best_model or "-",
                a.verdict.verdict,
                a.no_change.result if a.no_change else "not tested (not adaptive)",
                f"peak at B = {fmt(inf.peak_b)}"
                if a.decision.reason == "curved"
                else "not detected",
                fmt(inf.b_noise),
                fmt(a.noise.median) if a.noise else "not measured",
            ]
        )
    return head, rows


def fig_best_lr(entries: list[Entry], path: Path) -> None:
    """Best lr against batch size of every sweep, log-log, with each one's power law."""
    fig = new_figure((11, 5.6))
    ax = fig.subplots()
    all_b: set[int] = set()
    for i, e in enumerate(entries):
        a, color = e.analysis, f"C{i}"
        inf = a.inference
        all_b |= {int(b) for b in a.best["batch_size"]}
        draw_best_lrs(ax, a.best, color, MARKERS[i % len(MARKERS)], prefix=f"{e.label}: ")
        if inf.alpha is not None:
            b = np.geomspace(*inf.batch_range, 100)
            alpha_fan(ax, inf, b, color=color)
            if a.decision.reason == "curved":
                draw_rule(
                    ax, inf, "curved", b, f"{e.label}: rises then falls", ls=":", color=color, lw=2
                )
    bs = sorted(all_b)
    batch_axes(ax, bs)
    ax.set_ylabel("best peak learning rate")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    ax.set_title(
        "Best lr against batch size, per optimizer (power law with alpha's interval)", fontsize=11
    )
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)


def fig_steps(entries: list[Entry], path: Path) -> None:
    """Steps to target against batch size of every sweep that had a target."""
    fig = new_figure((10.5, 5.4))
    ax = fig.subplots()
    all_b: set[int] = set()
    for i, e in enumerate(entries):
        curve = e.analysis.steps
        if curve is None:
            continue
        t = curve.reached
        all_b |= {int(b) for b in curve.table["batch_size"]}
        target = f" ({curve.target})" if curve.target else ""
        ax.plot(
            t["batch_size"],
            t["steps"],
            MARKERS[i % 6],
            color=f"C{i}",
            ms=7,
            label=f"{e.label}{target}",
        )
        if curve.fit is not None:
            xs = np.linspace(curve.fit.x_min, curve.fit.x_max, 200)
            ax.plot(
                10**xs,
                10 ** curve.fit.log_steps(xs),
                "-",
                color=f"C{i}",
                lw=1.2,
                label=f"{e.label}: piecewise fit",
            )
    bs = sorted(all_b)
    ax.set_xscale("log")
    ax.set_yscale("log")
    if bs:
        ax.set_xticks(bs, [str(b) for b in bs])
    ax.minorticks_off()
    ax.set_xlabel("batch size B")
    ax.set_ylabel("optimizer steps to reach the target (fewest over lrs)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    ax.set_title(
        "Steps to target against batch size, per optimizer (Shallue et al. 2018)", fontsize=11
    )
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)


def compare_json(entries: list[Entry]) -> dict:
    out = []
    for e in entries:
        a, inf = e.analysis, e.analysis.inference
        out.append(
            {
                "label": e.label,
                "results_dir": a.results_dir,
                "report_dir": str(e.report_dir),
                "optimizer": a.optimizer.name,
                "momentum": a.optimizer.momentum,
                "effective_lr_factor": a.optimizer.effective_factor,
                "task": _task(a),
                "metric": a.metric,
                "best_lr": [
                    {
                        "batch_size": int(r["batch_size"]),
                        "lr": r["lr"],
                        "lr_ci": [r["lr_ci_lo"], r["lr_ci_hi"]],
                        "at_edge": bool(r["at_edge"]),
                    }
                    for _, r in a.best.iterrows()
                ],
                "alpha": inf.alpha,
                "alpha_ci": list(inf.alpha_ci),
                "best_model": inf.best_model,
                "verdict": a.verdict.verdict,
                "verdict_text": a.verdict.paragraph,
                "no_lr_change": None if a.no_change is None else a.no_change.result,
                "surge": None
                if a.decision.reason != "curved"
                else {
                    "b_peak": inf.peak_b,
                    "lr_peak": None if inf.peak_b is None else inf.lr_at("curved", inf.peak_b),
                },
                "b_noise_fit": inf.b_noise,
                "measured_noise_scale": None if a.noise is None else a.noise.median,
                "steps_to_target": None
                if a.steps is None
                else a.steps.table[["batch_size", "steps", "lr", "regime"]].to_dict(
                    orient="records"
                ),
            }
        )
    return jsonable({"sweeps": out})


def _blocks(entries: list[Entry], figs: dict[str, Path]) -> list[tuple]:
    tasks = {_task(e.analysis) for e in entries}
    metric = {e.analysis.metric for e in entries}
    blocks: list[tuple] = [
        ("h1", "Optimizers compared: how the best learning rate scales with batch size"),
        (
            "p",
            f"Sweeps: {', '.join(f'{e.label} (`{e.analysis.results_dir}`)' for e in entries)}."
            f" Best = {' / '.join(sorted(metric))} at the fixed epoch budget. Each sweep's "
            f"full report: {', '.join(f'`{e.report_dir}`' for e in entries)}.",
        ),
    ]
    if len(tasks) > 1:
        blocks.append(
            (
                "p",
                "WARNING: the sweeps ran on different data / models "
                f"({'; '.join(sorted(tasks))}): the comparison mixes tasks.",
            )
        )
    blocks += [("h2", "Summary"), ("table", *summary_rows(entries))]
    if "best_lr" in figs:
        blocks.append(("img", figs["best_lr"], "best lr against batch size, per optimizer"))
    for e in entries:
        a = e.analysis
        items = [a.verdict.paragraph, "Piecewise view: " + a.verdict.linear_range]
        if a.no_change is not None:
            items.append("No lr change needed (alpha = 0): " + a.no_change.text)
        if a.decision.reason == "curved":
            items.append(f"Surge: the best lr peaks near B = {fmt(a.inference.peak_b)}.")
        if a.optimizer.momentum is not None:
            items.append(f"Effective lr = lr / (1 - m) = {a.optimizer.effective_factor:.3g} x lr.")
        if a.noise is not None:
            items.append(comparison_text(a.noise, a.inference.b_noise, a.inference.b_noise_ci))
        if a.steps is not None:
            items.append(regimes_text(a.steps))
        blocks += [
            ("h2", f"{e.label}: {a.optimizer.describe()}, verdict {a.verdict.verdict}"),
            ("ul", items),
        ]
    if "steps" in figs:
        blocks += [
            ("h2", "Steps to target"),
            ("img", figs["steps"], "steps to target against batch size, per optimizer"),
        ]
    return blocks


def write_comparison(entries: list[Entry], out: Path) -> dict[str, Path]:
    fig_dir = out / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    figs = {"best_lr": fig_dir / "best_lr_compare.png"}
    fig_best_lr(entries, figs["best_lr"])
    if any(e.analysis.steps is not None for e in entries):
        figs["steps"] = fig_dir / "steps_compare.png"
        fig_steps(entries, figs["steps"])
    blocks = _blocks(entries, figs)
    (out / "compare.md").write_text(render_markdown(blocks, out), encoding="utf-8")
    (out / "compare.html").write_text(render_html(blocks), encoding="utf-8")
    (out / "compare.json").write_text(
        json.dumps(compare_json(entries), indent=2, allow_nan=False) + "\n", encoding="utf-8"
    )
    return {
        "compare.md": out / "compare.md",
        "compare.html": out / "compare.html",
        "compare.json": out / "compare.json",
        **figs,
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m analysis.compare_optimizers", description=__doc__.split("\n")[0]
    )
    p.add_argument(
        "--results",
        nargs="+",
        required=True,
        type=Path,
        help="two or more Ray Tune results folders (one sweep each)",
    )
    p.add_argument("--out", required=True, type=Path, help="report folder")
    p.add_argument(
        "--labels",
        nargs="+",
        default=None,
        help="one name per results folder (default: each sweep's optimizer)",
    )
    p.add_argument("--metric", default="val_loss", help="val_loss (default), val_acc, ...")
    p.add_argument("--objective", default="metric", choices=["metric", "steps_to_target"])
    p.add_argument("--margin", type=float, default=0.2)
    p.add_argument("--n-boot", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if len(args.results) < 2:
            raise AnalysisError("pass at least two results folders to compare (--results A B)")
        if args.labels is not None and len(args.labels) != len(args.results):
            raise AnalysisError(
                f"--labels gives {len(args.labels)} names for "
                f"{len(args.results)} results folders; give one per folder"
            )
        analyses = [
            analyze(
                r,
                metric=args.metric,
                n_boot=args.n_boot,
                seed=args.seed,
                objective=args.objective,
                margin=args.margin,
            )
            for r in args.results
        ]
        labels = args.labels or default_labels(analyses)
        entries = []
        for label, a in zip(labels, analyses, strict=True):
            report_dir = args.out / label
            write_report(a, report_dir)
            entries.append(Entry(label, a, report_dir))
        written = write_comparison(entries, args.out)
    except (AnalysisError, OSError) as exc:
        return error_exit(exc)
    head, rows = summary_rows(entries)
    for row in rows:
        print(" | ".join(f"{h}: {c}" for h, c in zip(head, row, strict=True)))
    print(
        f"Comparison: {written['compare.html']} (and compare.md, compare.json, figures/); "
        f"each sweep's report: {', '.join(str(e.report_dir) for e in entries)}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
