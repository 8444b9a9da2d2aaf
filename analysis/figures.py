"""The report's figures, drawn with matplotlib's Agg backend outside pyplot (no display).

    from analysis.figures import write_figures
    paths = write_figures(analysis, Path("report/figures"))   # name -> PNG path

Every figure is checked by eye on the synthetic scenarios (`python -m analysis.synthetic`) and
on the default sweep's results: metric against lr per batch size (with the fitted model and the
CI of the best lr), best lr against batch size (rule fits, divergence edge, measured noise
scale), the Goyal-style rule table, the warmup comparison, the article experiment's learning
curves and, when the trials had a target, steps-to-target against batch size with its regimes.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.ticker import MaxNLocator
from matplotlib.transforms import blended_transform_factory

from analysis.compare import COINCIDE_TOL, RULES
from analysis.load import add_feasible
from analysis.pipeline import Analysis
from analysis.plotting import (
    DPI,
    alpha_fan,
    batch_axes,
    clip_lr_axis,
    draw_best_lrs,
    draw_rule,
    draw_steps,
    finite_or_none,
    fmt,
    log_xlim,
    new_figure,
    panel_grid,
)

FIGURES = (
    "metric_vs_lr",
    "best_lr_vs_batch",
    "rule_table",
    "warmup",
    "learning_curves",
    "steps_to_target",
)
RULE_STYLE = {
    "linear": ("C0", "o"),
    "0.5x linear": ("C2", "v"),
    "2x linear": ("C3", "^"),
    "sqrt": ("C1", "s"),
    "unscaled": ("C7", "D"),
}


def fig_metric_vs_lr(a: Analysis, path: Path) -> None:
    """Final metric against lr for every batch size, with the parabola and the optimum's CI."""
    fin = add_feasible(a.trials, a.metric)
    fig, axes = panel_grid(len(a.best))
    for ax, (_, b) in zip(axes, a.best.iterrows(), strict=False):
        g = fin[fin["batch_size"] == b["batch_size"]]
        ok = g[g["feasible"]]
        for warm, color, label in ((False, "C0", "no warmup"), (True, "C1", "warmup")):
            part = ok[(ok["warmup_epochs"] > 0) == warm]
            if len(part):
                ax.scatter(part["lr"], part[a.metric], s=12, color=color, alpha=0.6, label=label)
        bad = g[~g["feasible"]]
        if len(bad):
            tr = blended_transform_factory(ax.transData, ax.transAxes)
            ax.scatter(
                bad["lr"],
                np.full(len(bad), 0.96),
                marker="x",
                color="red",
                s=25,
                transform=tr,
                label="diverged",
                clip_on=False,
            )
        if finite_or_none(b.get("mu_model")) is not None:
            xs = np.logspace(np.log10(g["lr"].min()) - 0.2, np.log10(g["lr"].max()) + 0.2, 300)
            ax.plot(xs, a.inference.curve(b, xs), "k-", lw=1.5, label="model (warmup ref.)")
        if finite_or_none(b["lr"]) is not None:
            ax.axvline(b["lr"], color="k", ls="--", lw=1)
            lo, hi = finite_or_none(b["lr_ci_lo"]), finite_or_none(b["lr_ci_hi"])
            if lo is not None or hi is not None:
                ax.axvspan(
                    lo or g["lr"].min() / 10,
                    hi or g["lr"].max() * 10,
                    color="0.5",
                    alpha=0.25,
                    lw=0,
                    label="95% CI (open side: to the edge)",
                )
        fitted = pd.Series([b["metric_best"]], dtype=float)
        lo, hi = _focus_y(ax, pd.concat([ok[a.metric], fitted]), a.maximize)
        off = ok[(ok[a.metric] > hi) | (ok[a.metric] < lo)]
        if len(off):
            tr = blended_transform_factory(ax.transData, ax.transAxes)
            ax.scatter(
                off["lr"],
                np.where(off[a.metric] > hi, 0.98, 0.02),
                marker="|",
                color="0.4",
                s=40,
                transform=tr,
                label="off scale",
                clip_on=False,
            )
        log_xlim(ax, g["lr"].min(), g["lr"].max())
        edge = "  AT EDGE" if b["at_edge"] else ""
        ax.set_title(
            f"B = {int(b['batch_size'])}{edge}", color="red" if edge else "black", fontsize=10
        )
        ax.set_xlabel("peak lr")
        ax.set_ylabel(a.metric)
        ax.grid(alpha=0.3, which="both")
    handles = {}
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(lab, h)
    height = fig.get_figheight()
    fig.legend(
        handles.values(),
        handles.keys(),
        loc="lower center",
        ncol=min(len(handles), 4),
        frameon=False,
        fontsize=9,
    )
    fig.suptitle(
        f"Final {a.metric} against learning rate, per batch size\n"
        f"(line: the model of all trials; dashed: best lr, grey: its 95% CI; x: diverged)",
        fontsize=11,
    )
    # room in inches for the legend (two rows at most) and the two-line title
    fig.tight_layout(rect=(0, 0.55 / height, 1, 1 - 0.55 / height))
    fig.savefig(path, dpi=DPI)


def _focus_y(ax, values: pd.Series, maximize: bool) -> tuple[float, float]:
    """Keep the region near the optimum readable; returns the y range (far points lie off it)."""
    v = values.dropna().to_numpy(dtype=float)
    if len(v) < 3:
        return -np.inf, np.inf
    best = v.max() if maximize else v.min()
    dist = np.abs(v - best)
    span = max(np.quantile(dist, 0.7), 1e-12) * 1.15
    lo, hi = (best - span, best + 0.04 * span) if maximize else (best - 0.04 * span, best + span)
    ax.set_ylim(lo, hi)
    return lo, hi


def fig_best_lr(a: Analysis, path: Path) -> None:
    """Best lr against batch size (log-log) with the fitted rules and the divergence edge."""
    inf, best = a.inference, a.best
    fig = new_figure((11, 5.6))
    ax = fig.subplots()
    bs = best["batch_size"].to_numpy(dtype=float)
    draw_best_lrs(ax, best)
    if inf.batch_range is not None and inf.alpha is not None:
        b_line = np.geomspace(inf.batch_range[0] / 1.05, inf.batch_range[1] * 1.05, 200)
        alpha_fan(ax, inf, b_line)
        draw_rule(ax, inf, "linear", b_line, "linear rule (fitted)", ls="--", color="C0")
        draw_rule(ax, inf, "sqrt", b_line, "sqrt rule (fitted)", ls="--", color="C1")
        if inf.b_noise is not None:
            draw_rule(
                ax,
                inf,
                "saturating",
                b_line,
                f"saturating, B_noise = {fmt(inf.b_noise)}",
                color="C4",
                lw=2,
            )
            if bs.min() / 2 <= inf.b_noise <= bs.max() * 2:
                ax.axvline(inf.b_noise, color="C4", ls=":", lw=1)
        if a.optimizer.adaptive:
            draw_rule(ax, inf, "constant", b_line, "no lr change (alpha = 0)", ls="--", color="C5")
        if a.decision.reason == "curved":
            draw_rule(
                ax, inf, "curved", b_line, "rises then falls (log-quadratic)", color="C3", lw=2
            )
    _noise_marks(ax, a, bs)
    div = best[best["lr_div"].notna()]
    if len(div):
        ax.scatter(
            div["batch_size"],
            div["lr_div"].astype(float),
            marker="v",
            color="red",
            s=40,
            label="divergence edge (smallest diverged lr)",
        )
    clip_lr_axis(ax, best)
    batch_axes(ax, bs)
    ax.set_ylabel("best peak learning rate")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    model = f", best rule {inf.best_model}" if inf.best_model else " (no rule fitted)"
    ax.set_title(f"Best lr against batch size: verdict {a.verdict.verdict}{model}", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)


def _noise_marks(ax, a: Analysis, bs: np.ndarray) -> None:
    """The measured noise scale B_simple: its median (line) and range over batch sizes."""
    if a.noise is None or a.noise.median is None or not len(bs):
        return
    lo, hi = a.noise.range
    shown = bs.min() / 4 <= a.noise.median <= bs.max() * 4
    label = f"measured B_simple, median {a.noise.median:.3g} (range {lo:.3g} to {hi:.3g})"
    if not shown:
        side = "right" if a.noise.median > bs.max() else "left"
        ax.text(
            0.99 if side == "right" else 0.01,
            0.02,
            label + f" (off scale, {side})",
            transform=ax.transAxes,
            ha=side,
            fontsize=8,
            color="C6",
        )
        return
    ax.axvline(a.noise.median, color="C6", ls="--", lw=1.5, label=label)
    ax.axvspan(max(lo, bs.min() / 4), min(hi, bs.max() * 4), color="C6", alpha=0.08, lw=0)


def fig_rule_table(a: Analysis, path: Path) -> None:
    """The rule table as a figure: metric at every rule's lr against batch size."""
    t = a.rules
    fig = new_figure((8, 5))
    ax = fig.subplots()
    best = t[t["rule"] == "best"]
    ax.plot(best["batch_size"], best["value"], "-", color="k", lw=2.5, label="best found")
    for rule in RULES:
        r = t[t["rule"] == rule]
        color, marker = RULE_STYLE[rule]
        ax.plot(r["batch_size"], r["value"], "-", color=color, lw=1, alpha=0.7)
        for how, fill in (("tried", color), ("interp.", "none")):
            s = r[r["how"] == how]
            ax.scatter(
                s["batch_size"],
                s["value"],
                marker=marker,
                facecolors=fill,
                edgecolors=color,
                s=40,
                label=f"{rule}" if how == "tried" else None,
            )
        d = r[r["how"] == "diverged"]
        if len(d):
            tr = blended_transform_factory(ax.transData, ax.transAxes)
            ax.scatter(
                d["batch_size"],
                np.full(len(d), 0.97),
                marker="x",
                color=color,
                s=40,
                transform=tr,
                clip_on=False,
            )
    v = t["value"].dropna().to_numpy(dtype=float)
    if len(v) and v.min() > 0 and v.max() / v.min() > 5:
        ax.set_yscale("log")
    ax.set_xscale("log")
    bs = sorted(t["batch_size"].unique())
    ax.set_xticks(bs, [str(int(b)) for b in bs])
    ax.minorticks_off()
    ax.set_xlabel("batch size B")
    ax.set_ylabel(f"final {a.metric}")
    ax.grid(alpha=0.3)
    ax.legend(
        fontsize=8, title="lr rule (hollow: interpolated, x on top: diverged)", title_fontsize=8
    )
    src = a.anchor.source if a.anchor else ""
    ax.set_title(
        f"Goyal-style rule table: {a.metric} under each lr rule\n(anchor: {src})", fontsize=10
    )
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)


def fig_warmup(a: Analysis, path: Path) -> None:
    """Best tried lr and divergence edge with and without warmup, and the model's shift."""
    w = a.warmup
    fig = new_figure((10.5, 5))
    ax = fig.subplots()
    for suffix, color, label, shift in (
        ("none", "C0", "no warmup", 0.97),
        ("warm", "C1", "warmup > 0", 1.03),
    ):
        lr = pd.to_numeric(w[f"lr_best_tried_{suffix}"], errors="coerce")
        ok = lr.notna()
        if ok.any():
            ax.scatter(
                w.loc[ok, "batch_size"] * shift,
                lr[ok],
                marker="o",
                color=color,
                label=f"best tried lr, {label}",
            )
        d = pd.to_numeric(w[f"lr_div_{suffix}"], errors="coerce")
        if d.notna().any():
            ax.scatter(
                w.loc[d.notna(), "batch_size"] * shift,
                d[d.notna()],
                marker="v",
                color=color,
                s=50,
                label=f"divergence edge, {label}",
            )
    wt, best = a.inference.warmup, a.best
    located = best[~best["at_edge"].astype(bool) & best["lr"].notna()]
    if wt is not None and len(located):
        lr = located["lr"].astype(float)
        ax.plot(
            located["batch_size"],
            lr,
            "-",
            color="C0",
            lw=1.5,
            label=f"model: best lr at warmup {wt.reference:g}",
        )
        for lev, m in zip(wt.levels, wt.shift_mu, strict=True):
            ax.plot(
                located["batch_size"],
                lr * 10**m,
                "-",
                color="C1",
                lw=1.5,
                label=f"model: best lr at warmup {lev:g} (x{10**m:.2f})",
            )
    batch_axes(ax, sorted(w["batch_size"].unique()))
    ax.set_ylabel("peak learning rate")
    handles = dict(zip(*reversed(ax.get_legend_handles_labels()), strict=True))
    ax.legend(
        handles.values(),
        handles.keys(),
        fontsize=8,
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        borderaxespad=0,
    )
    ax.set_title("Warmup: best lr and divergence edge with and without warmup", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)


def fig_learning_curves(a: Analysis, path: Path) -> None:
    """The article experiment: val_acc against epoch, one line per k, one panel per warmup."""
    c, panels = a.curves.curves, a.curves.panels
    fig, axes = panel_grid(len(panels), ncols=2, w=5.5, h=4.2)
    ks = sorted(c["k"].unique())
    v = c["value"].dropna()
    pad = 0.05 * max(float(v.max() - v.min()), 1e-3) if len(v) else 0.0
    cmap = matplotlib.colormaps["viridis"]
    for ax, (_, p) in zip(axes, panels.iterrows(), strict=False):
        cw = c[c["warmup_epochs"] == p["warmup_epochs"]]
        for i, k in enumerate(ks):
            ck = cw[cw["k"] == k].sort_values("epoch")
            if ck.empty:
                continue
            color = cmap(i / max(len(ks) - 1, 1))
            ax.plot(
                ck["epoch"],
                ck["value"],
                "-o",
                ms=3,
                color=color,
                label=f"k={k:g} (B={int(ck['batch_size'].iloc[0])}, lr={ck['lr'].iloc[0]:.3g})",
            )
            if int(ck["batch_size"].iloc[0]) in p["diverged_batches"]:
                ax.plot(ck["epoch"].iloc[-1], ck["value"].iloc[-1], "x", color="red", ms=9)
        verdict = "coincide" if p["coincide"] else "do NOT coincide"
        ax.set_title(
            f"warmup {p['warmup_epochs']:g} epochs: curves {verdict}\n(final spread "
            f"{fmt(p['spread'], '.3f')}, tolerance {COINCIDE_TOL})",
            fontsize=10,
        )
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if len(v):
            ax.set_ylim(v.min() - pad, v.max() + pad)  # one scale: panels compare
        ax.set_xlabel("epoch (same number of examples for every k)")
        ax.set_ylabel(a.curves.value)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(
        f"Article experiment: linear-scaling grid, B = {a.curves.base_batch}*k, lr = lr0*k",
        fontsize=11,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)


def fig_steps(a: Analysis, path: Path) -> None:
    """Steps to the target (best over lrs) against batch size, log-log, regimes shaded."""
    draw_steps(a.steps, path, "")


def write_figures(a: Analysis, fig_dir: Path) -> dict[str, Path]:
    """Every figure that has data; returns name -> path."""
    fig_dir.mkdir(parents=True, exist_ok=True)
    makers = {
        "metric_vs_lr": (fig_metric_vs_lr, not a.best.empty),
        "best_lr_vs_batch": (fig_best_lr, not a.best.empty),
        "rule_table": (fig_rule_table, not a.rules.empty),
        "warmup": (fig_warmup, not a.warmup.empty),
        "learning_curves": (fig_learning_curves, not a.curves.panels.empty),
        "steps_to_target": (fig_steps, a.steps is not None),
    }
    out = {}
    for name in FIGURES:
        maker, has_data = makers[name]
        path = fig_dir / f"{name}.png"
        if has_data:
            maker(a, path)
            out[name] = path
        else:
            path.unlink(missing_ok=True)  # a stale figure of an earlier run would mislead
    return out
