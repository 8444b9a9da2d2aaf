"""Figure helpers shared by the report (`analysis.figures`) and the optimizer comparison
(`analysis.compare_optimizers`): Agg figures outside pyplot, number formats, log axes, the best
lr per batch size with its interval, a fitted rule's line, the steps-to-target figure.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter, NullLocator
from matplotlib.transforms import blended_transform_factory

from analysis.inference import Inference
from analysis.steps import REGIMES, StepsCurve

DPI = 110
REGIME_COLORS = dict(zip(REGIMES, ("C2", "C1", "0.6"), strict=True))


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


def panel_grid(n: int, ncols: int = 4, w: float = 3.6, h: float = 2.9):
    """A figure with n panels (the unused ones hidden) and room for a title and a legend."""
    ncols = max(1, min(ncols, n))
    nrows = math.ceil(n / ncols)
    fig = new_figure((max(w * ncols, 7.5), h * nrows + 1.1))
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax in axes.ravel()[n:]:
        ax.set_visible(False)
    return fig, axes.ravel()


def lr_ticks(axis, decades: float) -> None:
    """Plain-number labels on a log axis: at 1, 2, 5 x 10^n over short spans, 10^n otherwise."""
    subs = (1.0, 2.0, 5.0) if decades < 2.5 else (1.0,)
    axis.set_major_locator(LogLocator(base=10, subs=subs))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def log_xlim(ax, lo: float, hi: float, min_decades: float = 1.2) -> None:
    """Log x limits around [lo, hi] spanning at least min_decades, with readable labels."""
    mid, half = np.log10(lo * hi) / 2, max(np.log10(hi / lo) / 2 + 0.15, min_decades / 2)
    ax.set_xlim(10 ** (mid - half), 10 ** (mid + half))
    ax.set_xscale("log")
    lr_ticks(ax.xaxis, 2 * half)


def batch_axes(ax, batches) -> None:
    """Log-log axes: batch sizes labelled on x, plain-number lr labels on y."""
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(list(batches), [str(int(b)) for b in batches])
    ax.xaxis.set_minor_locator(NullLocator())
    lo, hi = ax.get_ylim()
    lr_ticks(ax.yaxis, np.log10(hi / lo))
    ax.set_xlabel("batch size B")
    ax.grid(alpha=0.3)


def clip_lr_axis(ax, best: pd.DataFrame) -> None:
    """y limits from the measurements (intervals, divergence edges), not from fitted lines."""
    cols = [c for c in ("lr", "lr_ci_lo", "lr_ci_hi", "lr_div") if c in best.columns]
    v = pd.to_numeric(best[cols].stack(), errors="coerce").to_numpy(dtype=float)
    v = v[np.isfinite(v) & (v > 0)]
    if len(v):
        ax.set_ylim(v.min() / 1.6, v.max() * 1.6)


def draw_best_lrs(
    ax, best: pd.DataFrame, color: str = "k", marker: str = "o", prefix: str = ""
) -> None:
    """Located optima with their 95% intervals; optima at the edge as one-sided bounds
    (an arrow towards the open side)."""
    has = best[best["lr"].notna()]
    located = has[~has["at_edge"].astype(bool)]
    if len(located):
        lr = located["lr"].astype(float)
        lo = (lr - located["lr_ci_lo"].astype(float)).clip(lower=0)
        hi = (located["lr_ci_hi"].astype(float) - lr).clip(lower=0)
        ax.errorbar(
            located["batch_size"],
            lr,
            yerr=[lo, hi],
            fmt=marker,
            color=color,
            capsize=3,
            ms=6,
            label=f"{prefix}best lr (95% CI)",
        )
    edge = has[has["at_edge"].astype(bool)]
    for _, r in edge.iterrows():
        up = finite_or_none(r["lr_ci_hi"]) is None
        ax.annotate(
            "",
            xy=(r["batch_size"], float(r["lr"]) * (1.8 if up else 1 / 1.8)),
            xytext=(r["batch_size"], float(r["lr"])),
            arrowprops={"arrowstyle": "->", "color": color, "lw": 1.2},
        )
    if len(edge):
        ax.scatter(
            edge["batch_size"],
            edge["lr"].astype(float),
            marker=marker,
            s=40,
            facecolors="none",
            edgecolors=color,
            label=f"{prefix}at the edge: a bound (arrow: open side)",
        )


def draw_rule(ax, inf: Inference, name: str, b_line: np.ndarray, label: str, **style) -> None:
    """A fitted rule's best lr over b_line (nothing when the rule was not fitted)."""
    mu = inf.rule_mu(name, b_line)
    if mu is not None:
        ax.plot(b_line, 10 ** np.asarray(mu), label=label, **style)


def alpha_fan(ax, inf: Inference, b_line: np.ndarray, color: str = "C2") -> None:
    """The power law and the lines of alpha's interval ends, pivoting at B_ref."""
    if inf.alpha is None:
        return
    p = inf.rules["power"].mu_params
    x = np.log10(b_line) - inf.ref_log_b
    lo, hi = inf.alpha_ci
    ax.plot(
        b_line,
        10 ** (p[0] + p[1] * x),
        color=color,
        lw=2,
        label=f"power law, alpha = {inf.alpha:.2f} [{fmt(lo, '.2f')}, {fmt(hi, '.2f')}]",
    )
    if lo is not None and hi is not None:
        ax.fill_between(
            b_line, 10 ** (p[0] + lo * x), 10 ** (p[0] + hi * x), color=color, alpha=0.15, lw=0
        )


def draw_steps(curve: StepsCurve, path: Path, title_prefix: str) -> None:
    """Steps to the target (best over lrs) against batch size, log-log, regimes shaded."""
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
        ax.plot(
            10**xs,
            10 ** f.log_steps(xs),
            "-",
            color="k",
            lw=1.5,
            label=f"piecewise fit (middle slope {f.slope_mid:.2f})",
        )
    c = curve.critical
    if c is not None and c.b_crit is not None:
        line = np.geomspace(bs.min(), bs.max(), 100)
        ax.plot(
            line,
            c.steps(line),
            "--",
            color="C4",
            lw=1.5,
            label=f"S_min (1 + B_crit/B), B_crit = {c.b_crit:.3g}",
        )
    if len(ok):
        b0, s0 = float(ok["batch_size"].iloc[0]), float(ok["steps"].iloc[0])
        line = np.geomspace(bs.min(), bs.max(), 50)
        ax.plot(line, s0 * b0 / line, ":", color="C2", label="perfect scaling from smallest B")
        ax.plot(
            ok["batch_size"],
            ok["steps"],
            "o",
            color="k",
            ms=7,
            label="fewest steps over the lrs tried",
        )
    never = t[t["steps"].isna()]
    if len(never):
        tr = blended_transform_factory(ax.transData, ax.transAxes)
        ax.scatter(
            never["batch_size"],
            np.full(len(never), 0.96),
            marker="x",
            color="red",
            s=40,
            transform=tr,
            clip_on=False,
            label="target never reached",
        )
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
    ax.set_title(
        f"{title_prefix}Steps to target{target} against batch size (Shallue et al. 2018)",
        fontsize=11,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
