"""The report's figures, drawn with matplotlib's Agg backend outside pyplot (no display).

    >>> from analysis.figures import write_figures
    >>> paths = write_figures(analysis, Path("report/figures"))   # name -> PNG path

Every figure is checked by eye on the synthetic scenarios (`python -m analysis.synthetic`) and
on the default sweep's results: metric against lr per batch size (with the parabola and the
CI of the best lr), best lr against batch size (rule fits, divergence edge, measured noise
scale), the Goyal-style rule table, the warmup comparison, the article experiment's learning
curves and, when the trials had a target, steps-to-target against batch size with its regimes.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import (
    FuncFormatter,
    LogLocator,
    MaxNLocator,
    NullFormatter,
    NullLocator,
)
from matplotlib.transforms import blended_transform_factory

from analysis.best import add_feasible
from analysis.compare import COINCIDE_TOL, RULES
from analysis.fit import RuleFits
from analysis.pipeline import Analysis
from analysis.steps import REGIMES, StepsCurve

FIGURES = (
    "metric_vs_lr",
    "best_lr_vs_batch",
    "rule_table",
    "warmup",
    "learning_curves",
    "steps_to_target",
)
REGIME_COLORS = dict(zip(REGIMES, ("C2", "C1", "0.6"), strict=True))
DPI = 110
RULE_STYLE = {
    "linear": ("C0", "o"),
    "0.5x linear": ("C2", "v"),
    "2x linear": ("C3", "^"),
    "sqrt": ("C1", "s"),
    "unscaled": ("C7", "D"),
}


def finite_or_none(v: Any) -> float | None:
    """A finite float or None."""
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def fmt(v: Any, spec: str = ".3g") -> str:
    """A number for a table or a label; "-" for None, NaN or inf."""
    f = finite_or_none(v)
    return "-" if f is None else format(f, spec)


def new_figure(size: tuple[float, float]) -> Figure:
    """A figure drawn by the Agg backend, outside pyplot (no global state, no display)."""
    fig = Figure(figsize=size)
    FigureCanvasAgg(fig)
    return fig


def _grid(n: int, ncols: int = 4, w: float = 3.6, h: float = 2.9):
    ncols = max(1, min(ncols, n))
    nrows = math.ceil(n / ncols)
    fig = new_figure((max(w * ncols, 7.5), h * nrows + 1.1))  # room for title and legend
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax in axes.ravel()[n:]:
        ax.set_visible(False)
    return fig, axes.ravel()


def fig_metric_vs_lr(a: Analysis, path: Path) -> None:
    """Final metric against lr for every batch size, with the parabola and the optimum's CI."""
    fin = add_feasible(a.trials, a.metric)
    fig, axes = _grid(len(a.best))
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
        if finite_or_none(b.get("fit_a2")) is not None and b["fit"] == "parabola":
            xs = np.linspace(b["fit_x_lo"], b["fit_x_hi"], 60)
            dx = xs - b["fit_center"]
            ax.plot(
                10**xs,
                (b["fit_a2"] * dx + b["fit_a1"]) * dx + b["fit_a0"],
                "k-",
                lw=1.5,
                label="parabola",
            )
        if finite_or_none(b["lr"]) is not None:
            ax.axvline(b["lr"], color="k", ls="--", lw=1)
            if finite_or_none(b["lr_ci_lo"]) is not None:
                ax.axvspan(
                    b["lr_ci_lo"], b["lr_ci_hi"], color="0.5", alpha=0.25, lw=0, label="95% CI"
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
        _log_xlim(ax, g["lr"].min(), g["lr"].max())
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
        f"(dashed: best lr, grey: its 95% CI; x: diverged)",
        fontsize=11,
    )
    # room in inches for the legend (two rows at most) and the two-line title
    fig.tight_layout(rect=(0, 0.55 / height, 1, 1 - 0.55 / height))
    fig.savefig(path, dpi=DPI)


def _log_xlim(ax, lo: float, hi: float, min_decades: float = 1.2) -> None:
    """Log x limits around [lo, hi] spanning at least min_decades, with readable labels."""
    mid, half = np.log10(lo * hi) / 2, max(np.log10(hi / lo) / 2 + 0.15, min_decades / 2)
    ax.set_xlim(10 ** (mid - half), 10 ** (mid + half))
    ax.set_xscale("log")
    _lr_ticks(ax.xaxis, 2 * half)


def _lr_ticks(axis, decades: float) -> None:
    """Plain-number labels on a log axis: at 1, 2, 5 x 10^n over short spans, 10^n otherwise."""
    subs = (1.0, 2.0, 5.0) if decades < 2.5 else (1.0,)
    axis.set_major_locator(LogLocator(base=10, subs=subs))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


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
    """Best lr against batch size (log-log) with the rule fits and the divergence edge."""
    f, best = a.fits, a.best
    fig = new_figure((11, 5.6))
    ax = fig.subplots()
    bs = best["batch_size"].to_numpy(dtype=float)
    b_line = np.geomspace(bs.min() * 0.9, bs.max() * 1.1, 200) if len(bs) else np.array([])
    has = best["lr"].notna()
    for edge, style in (
        (False, dict(fmt="o", color="k", label="best lr (95% CI)")),
        (True, dict(fmt="^", color="0.55", mfc="none", label="at edge (a bound; not fitted)")),
    ):
        sel = best[has & (best["at_edge"] == edge)]
        if sel.empty:
            continue
        lo = (sel["lr"] - sel["lr_ci_lo"].fillna(sel["lr"])).clip(lower=0)
        hi = (sel["lr_ci_hi"].fillna(sel["lr"]) - sel["lr"]).clip(lower=0)
        ax.errorbar(sel["batch_size"], sel["lr"], yerr=[lo, hi], capsize=3, ms=6, **style)
    if f.alpha is not None:
        b_lo, b_hi = f.batch_range
        _power_band(ax, f, np.geomspace(b_lo / 1.05, b_hi * 1.05, 100))
    ref = best[has].sort_values("batch_size")
    if len(ref):
        b0, lr0 = float(ref["batch_size"].iloc[0]), float(ref["lr"].iloc[0])
        ax.plot(b_line, lr0 * b_line / b0, "--", color="C0", label="linear rule from smallest B")
        ax.plot(
            b_line, lr0 * np.sqrt(b_line / b0), "--", color="C1", label="sqrt rule from smallest B"
        )
    if f.lr_max is not None:
        ax.plot(
            b_line,
            f.lr_at("saturating", b_line),
            "-",
            color="C4",
            lw=2,
            label=f"saturating fit, B_noise = {fmt(f.b_noise)}"
            if f.b_noise is not None
            else "saturating fit (flat: B_noise -> 0)",
        )
        if f.b_noise is not None and bs.min() / 2 <= f.b_noise <= bs.max() * 2:
            ax.axvline(f.b_noise, color="C4", ls=":", lw=1)
    if "constant" in f.intercepts:
        ax.plot(b_line, f.lr_at("constant", b_line), "--", color="C5",
                label="no lr change (alpha = 0) fit")
    if f.surge is not None:
        ax.plot(b_line, f.surge.lr_at(b_line), "-", color="C3", lw=2,
                label="surge: parabola in log-log")
        ax.axvline(f.surge.b_peak, color="C3", ls="-.", lw=1.2,
                   label=f"surge peak at B = {f.surge.b_peak:.3g}")
    _noise_marks(ax, a, bs)
    div = best[best["lr_div"].notna()]
    if len(div):
        ax.scatter(
            div["batch_size"],
            div["lr_div"],
            marker="v",
            color="red",
            s=40,
            label="divergence edge (smallest diverged lr)",
        )
    _clip_lr_axis(ax, best)
    _batch_axes(ax, bs)
    ax.set_ylabel("best peak learning rate")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    model = f", best model {f.best_model}" if f.best_model else " (no rule fitted)"
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
        ax.text(0.99 if side == "right" else 0.01, 0.02, label + f" (off scale, {side})",
                transform=ax.transAxes, ha=side, fontsize=8, color="C6")
        return
    ax.axvline(a.noise.median, color="C6", ls="--", lw=1.5, label=label)
    ax.axvspan(max(lo, bs.min() / 4), min(hi, bs.max() * 4), color="C6", alpha=0.08, lw=0)


def _clip_lr_axis(ax, best: pd.DataFrame) -> None:
    """y limits from the measurements (CIs, divergence edges), not from extrapolated fits."""
    cols = ["lr", "lr_ci_lo", "lr_ci_hi", "lr_div"]
    v = pd.to_numeric(best[cols].stack(), errors="coerce").to_numpy(dtype=float)
    v = v[np.isfinite(v) & (v > 0)]
    if len(v):
        ax.set_ylim(v.min() / 1.6, v.max() * 1.6)


def _batch_axes(ax, batches) -> None:
    """Log-log axes: batch sizes labelled on x, plain-number lr labels on y."""
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(list(batches), [str(int(b)) for b in batches])
    ax.xaxis.set_minor_locator(NullLocator())
    lo, hi = ax.get_ylim()
    _lr_ticks(ax.yaxis, np.log10(hi / lo))
    ax.set_xlabel("batch size B")
    ax.grid(alpha=0.3)


def _power_band(ax, f: RuleFits, b_line: np.ndarray) -> None:
    x = np.log10(b_line)
    cov = np.asarray(f.power_cov)
    var = cov[0, 0] + 2 * x * cov[0, 1] + x * x * cov[1, 1]
    y = f.power_intercept + f.alpha * x
    half = f.t_quantile * np.sqrt(np.maximum(var, 0))
    lo, hi = f.alpha_ci
    ax.plot(
        b_line,
        10**y,
        color="C2",
        lw=2,
        label=f"power law, alpha = {f.alpha:.2f} [{lo:.2f}, {hi:.2f}]",
    )
    ax.fill_between(b_line, 10 ** (y - half), 10 ** (y + half), color="C2", alpha=0.2, lw=0)


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
    """Best lr and divergence edge with and without warmup, against batch size."""
    w = a.warmup
    fig = new_figure((10.5, 5))
    ax = fig.subplots()
    for suffix, color, label, shift in (
        ("none", "C0", "no warmup", 0.97),
        ("warm", "C1", "warmup > 0", 1.03),
    ):
        lr = w[f"lr_{suffix}"]
        ok = lr.notna()
        if ok.any():
            lo = (lr - w[f"lr_ci_lo_{suffix}"].fillna(lr)).clip(lower=0)[ok]
            hi = (w[f"lr_ci_hi_{suffix}"].fillna(lr) - lr).clip(lower=0)[ok]
            edge = w.loc[ok, f"at_edge_{suffix}"].astype(bool).to_numpy()
            xb = w.loc[ok, "batch_size"] * shift
            ax.errorbar(
                xb,
                lr[ok],
                yerr=[lo, hi],
                fmt="o",
                color=color,
                capsize=3,
                label=f"best lr, {label}",
            )
            if edge.any():
                ax.scatter(
                    xb[edge],
                    lr[ok][edge],
                    s=120,
                    facecolors="none",
                    edgecolors="red",
                    label="at edge (a bound)",
                )
        d = w[f"lr_div_{suffix}"]
        if d.notna().any():
            ax.scatter(
                w.loc[d.notna(), "batch_size"] * shift,
                d[d.notna()],
                marker="v",
                color=color,
                s=50,
                label=f"divergence edge, {label}",
            )
    _batch_axes(ax, sorted(w["batch_size"].unique()))
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
    fig, axes = _grid(len(panels), ncols=2, w=5.5, h=4.2)
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


def draw_steps(curve: StepsCurve, path: Path, title_prefix: str) -> None:
    """The steps-to-target figure of one curve (also used by analysis.compare_optimizers)."""
    t = curve.table
    fig = new_figure((10.5, 5.4))
    ax = fig.subplots()
    ok = t[t["steps"].notna()]
    bs = t["batch_size"].to_numpy(dtype=float)
    f = curve.fit
    if f is not None:
        edges = [bs.min() / 1.3, f.b1, f.b2, bs.max() * 1.3]
        for regime, lo, hi in zip(REGIMES, edges[:-1], edges[1:], strict=True):
            if hi > lo * 1.001:
                ax.axvspan(lo, hi, color=REGIME_COLORS[regime], alpha=0.12, lw=0, label=regime)
        xs = np.linspace(np.log10(bs.min()), np.log10(bs.max()), 200)
        ax.plot(10**xs, 10 ** f.log_steps(xs), "-", color="k", lw=1.5,
                label=f"piecewise fit (middle slope {f.slope_mid:.2f})")
    if len(ok):
        b0, s0 = float(ok["batch_size"].iloc[0]), float(ok["steps"].iloc[0])
        line = np.geomspace(bs.min(), bs.max(), 50)
        ax.plot(line, s0 * b0 / line, ":", color="C2", label="perfect scaling from smallest B")
        ax.plot(ok["batch_size"], ok["steps"], "o", color="k", ms=7,
                label="fewest steps over the lrs tried")
    never = t[t["steps"].isna()]
    if len(never):
        tr = blended_transform_factory(ax.transData, ax.transAxes)
        ax.scatter(never["batch_size"], np.full(len(never), 0.96), marker="x", color="red",
                   s=40, transform=tr, clip_on=False, label="target never reached")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(list(bs), [str(int(b)) for b in bs])
    ax.xaxis.set_minor_locator(NullLocator())
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.set_xlabel("batch size B")
    ax.set_ylabel("optimizer steps to reach the target")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    target = f" ({curve.target})" if curve.target else ""
    ax.set_title(f"{title_prefix}Steps to target{target} against batch size "
                 "(Shallue et al. 2018)", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)


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
