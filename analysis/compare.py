"""The folklore rules against the data: rule table, warmup comparison, article learning curves.

- `rule_table`: in the style of Goyal et al. (2017) Table 2a, for every batch size the metric
  reached at the linear-rule lr, 0.5x and 2x linear, the sqrt rule and the unscaled lr, next to
  the best found. The linear rule is anchored at the smallest batch size B0: lr_lin(B) =
  r * B with r the median lr / B of the phase-"grid" trials (the article's grid, base_lr * B /
  base_batch_size), or, without grid trials, r = best lr of B0 / B0. The metric at a rule's lr is
  the seed mean (best warmup) of the trials at that lr when one was tried within RULE_TOL
  decades ("tried"), else interpolated linearly in log lr between the tried lrs around it
  ("interp."); "diverged" when a smaller lr already diverged; "not tried" outside the range.
- `warmup_table`: per batch size, the best tried lr and metric and the divergence edge without
  and with warmup, beside the per-batch warmup test of `analysis.warmup_test` (the model's
  joint test decides whether warmup matters; this table shows the data behind it).
- `learning_curves`: the article experiment (phase-"grid" trials): val_acc against epoch, one
  line per k = B / B0, one panel per warmup value; the curves "coincide" when the final val_acc
  of all k lies within COINCIDE_TOL.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis.load import NOT_REACHED_METRICS, add_feasible, maximize_metric

RULE_TOL = 0.02  # decades (~5%): a tried lr this close counts as the rule's lr
COINCIDE_TOL = 0.02  # accuracy: learning curves whose final values lie within this coincide
RULES = ("linear", "0.5x linear", "2x linear", "sqrt", "unscaled")


@dataclass(frozen=True)
class Anchor:
    """Where the rules start: lr_lin(B) = ratio * B, and lr0 = ratio * batch."""

    batch: int
    ratio: float  # lr per example of batch
    source: str

    @property
    def lr0(self) -> float:
        return self.ratio * self.batch

    def rule_lr(self, rule: str, batch: float) -> float:
        k = batch / self.batch
        factor = {
            "linear": k,
            "0.5x linear": 0.5 * k,
            "2x linear": 2 * k,
            "sqrt": k**0.5,
            "unscaled": 1.0,
        }[rule]
        return self.lr0 * factor


def linear_anchor(trials: pd.DataFrame, best: pd.DataFrame) -> Anchor | None:
    """The linear rule's anchor: the phase-grid lr / B ratio, else the best lr at B0."""
    if best.empty:
        return None
    b0 = int(best["batch_size"].min())
    grid = trials[trials["phase"] == "grid"]
    if len(grid):
        ratio = float(np.median(grid["lr"] / grid["batch_size"]))
        return Anchor(b0, ratio, f"phase-grid trials: lr = {ratio * b0:.3g} * B / {b0}")
    row = best[best["batch_size"] == b0].iloc[0]
    if row["lr"] is None or pd.isna(row["lr"]):
        return None
    edge = " (at the edge of the lrs tried)" if row["at_edge"] else ""
    return Anchor(b0, float(row["lr"]) / b0, f"best lr at B = {b0}{edge}: {row['lr']:.3g}")


def lr_profile(trials: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Per (batch_size, lr): seed-mean metric of the best warmup, and whether all diverged."""
    fin = add_feasible(trials, metric)
    fin = fin.assign(lr_key=np.round(np.log10(fin["lr"].to_numpy(dtype=float)), 6))
    sign = -1.0 if maximize_metric(metric) else 1.0
    feas = fin[fin["feasible"]]
    means = feas.groupby(["batch_size", "lr_key", "warmup_epochs"])[metric].mean().reset_index()
    means["score"] = sign * means[metric]
    prof = means.loc[means.groupby(["batch_size", "lr_key"])["score"].idxmin()]
    prof = prof[["batch_size", "lr_key", metric]].rename(columns={metric: "value"})
    fin["is_div"] = fin["status"] == "diverged"
    tried = (
        fin.groupby(["batch_size", "lr_key"])
        .agg(n=("is_div", "size"), all_div=("is_div", "all"))
        .reset_index()
    )
    out = tried.merge(prof, on=["batch_size", "lr_key"], how="left")
    out["diverged"] = out["value"].isna()
    if metric in NOT_REACHED_METRICS:  # NaN: never reached the target; diverged only if it did
        out["diverged"] &= out["all_div"]
    out = out.drop(columns="all_div")
    return out.sort_values(["batch_size", "lr_key"]).reset_index(drop=True)


def metric_at(profile_b: pd.DataFrame, lr: float) -> tuple[float | None, str]:
    """(metric, how) at one lr from one batch size's lr profile (see the module docstring)."""
    x = np.log10(lr)
    keys = profile_b["lr_key"].to_numpy()
    div = profile_b["diverged"].to_numpy()
    vals = profile_b["value"].to_numpy(dtype=float)
    has = np.isfinite(vals)
    near = np.abs(keys - x) <= RULE_TOL
    if near.any() and has[near].any():
        return float(np.mean(vals[near & has])), "tried"
    if (div & (keys <= x + RULE_TOL)).any():
        return None, "diverged"
    if near.any():  # tried, neither finite nor diverged: a target never reached
        return None, "not reached"
    below, above = keys < x, keys > x
    if not below.any() or not above.any():
        return None, "not tried"
    i, j = np.flatnonzero(below)[-1], np.flatnonzero(above)[0]
    if div[j]:
        return None, "not tried"
    if not (has[i] and has[j]):
        return None, "not reached"
    t = (x - keys[i]) / (keys[j] - keys[i])
    return float(vals[i] + t * (vals[j] - vals[i])), "interp."


def rule_table(
    trials: pd.DataFrame, best: pd.DataFrame, metric: str
) -> tuple[pd.DataFrame, Anchor | None]:
    """Long table: batch_size, rule ("best" and RULES), lr, metric value, how it was obtained."""
    anchor = linear_anchor(trials, best)
    if anchor is None:
        return pd.DataFrame(columns=["batch_size", "k", "rule", "lr", "value", "how"]), None
    prof = lr_profile(trials, metric)
    rows = []
    for _, b in best.iterrows():
        batch = int(b["batch_size"])
        k = batch / anchor.batch
        pb = prof[prof["batch_size"] == batch]
        found = None if pd.isna(b.get("metric_best_tried")) else b["metric_best_tried"]
        how = "best tried" + (" (at edge)" if b["at_edge"] else "")
        rows.append((batch, k, "best", b.get("lr_best_tried"), found, how))
        for rule in RULES:
            lr = anchor.rule_lr(rule, batch)
            value, how = metric_at(pb, lr)
            rows.append((batch, k, rule, lr, value, how))
    table = pd.DataFrame(rows, columns=["batch_size", "k", "rule", "lr", "value", "how"])
    return table, anchor


def warmup_table(
    trials: pd.DataFrame, metric: str, per_batch: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Per batch size, without (warmup 0) and with warmup (> 0): the best tried lr and metric
    and the smallest diverged lr; with the Holm-adjusted p of the per-batch warmup test when
    given. Empty when the trials do not have both warmup 0 and warmup > 0."""
    fin = add_feasible(trials, metric)
    if not ((fin["warmup_epochs"] <= 0).any() and (fin["warmup_epochs"] > 0).any()):
        return pd.DataFrame()
    sign = -1.0 if maximize_metric(metric) else 1.0
    rows = []
    for b, g in fin.groupby("batch_size", sort=True):
        row: dict = {"batch_size": int(b)}
        warm = g["warmup_epochs"] > 0
        for name, part in (("none", g[~warm]), ("warm", g[warm])):
            ok = part[part["feasible"]]
            j = (sign * ok[metric]).idxmin() if len(ok) else None
            div = part.loc[part["status"] == "diverged", "lr"]
            row[f"lr_best_tried_{name}"] = None if j is None else float(ok.at[j, "lr"])
            row[f"metric_best_tried_{name}"] = None if j is None else float(ok.at[j, metric])
            row[f"lr_div_{name}"] = float(div.min()) if len(div) else None
            row[f"n_trials_{name}"] = len(part)
        rows.append(row)
    table = pd.DataFrame(rows)
    if per_batch is not None and len(per_batch):
        table = table.merge(per_batch[["batch_size", "p", "p_holm"]], on="batch_size", how="left")
    return table


@dataclass(frozen=True)
class Curves:
    """The article experiment's learning curves and whether they coincide, per warmup value."""

    curves: pd.DataFrame  # warmup_epochs, k, batch_size, lr, epoch, value, n_seeds
    panels: pd.DataFrame  # warmup_epochs, n_k, spread, coincide, finals (text), diverged_k
    value: str  # the column plotted (val_acc, or the metric when val_acc is absent)
    base_batch: int | None


def learning_curves(epochs: pd.DataFrame, trials: pd.DataFrame, metric: str) -> Curves:
    """Curves of the phase-grid trials; at the lr / B ratio closest to their median per B."""
    value = "val_acc" if "val_acc" in epochs.columns else metric
    grid = trials[(trials["phase"] == "grid") & (trials["status"] != "empty")]
    empty = pd.DataFrame()
    if grid.empty or value not in epochs.columns:
        return Curves(empty, empty, value, None)
    ratio = grid["lr"] / grid["batch_size"]
    dist = np.abs(np.log10(ratio) - np.log10(ratio.median()))
    keep = grid[dist <= dist.groupby(grid["batch_size"]).transform("min") + 1e-9]
    base = int(keep["batch_size"].min())
    ep = epochs[epochs["trial"].isin(keep["trial"])]
    curves = (
        ep.groupby(["warmup_epochs", "batch_size", "epoch"])
        .agg(lr=("lr", "first"), value=(value, "mean"), n_seeds=(value, "size"))
        .reset_index()
    )
    curves.insert(1, "k", curves["batch_size"] / base)
    panels = [
        _panel(w, keep[keep["warmup_epochs"] == w], value)
        for w in sorted(keep["warmup_epochs"].unique())
    ]
    return Curves(curves, pd.DataFrame(panels), value, base)


def _panel(warmup: float, grid_w: pd.DataFrame, value: str) -> dict:
    done = grid_w[grid_w["status"] == "done"]
    finals = done.groupby("batch_size")[value].mean()
    diverged = sorted(int(b) for b in grid_w.loc[grid_w["status"] == "diverged", "batch_size"])
    spread = float(finals.max() - finals.min()) if len(finals) else None
    coincide = spread is not None and spread <= COINCIDE_TOL and not diverged
    return {
        "warmup_epochs": float(warmup),
        "n_k": int(grid_w["batch_size"].nunique()),
        "spread": spread,
        "coincide": coincide,
        "diverged_batches": diverged,
        "final_min": float(finals.min()) if len(finals) else None,
        "final_max": float(finals.max()) if len(finals) else None,
    }
