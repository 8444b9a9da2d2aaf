"""fit.json: the machine-readable result, built from an `Analysis`.

The keys of the contract (docs/design.md) come first and never change meaning: `metric`,
`best_lr` (per batch size: `batch_size`, `lr`, `lr_ci`, `at_edge`, `n_trials`, `n_diverged`),
`power_law` (`alpha`, `alpha_ci`, `lr_at_min_batch`), `models` (`linear`, `sqrt`, `power`,
`saturating` with `lr_max` and `b_noise`, each with `aic`), `best_model`, `verdict`. Every other
key is an extra; keys are added, never renamed or removed. Values that cannot be computed are
null (never NaN). An interval side that the data leave open is null too: `lr_ci: [0.05, null]`
means "at least 0.05".

Since the likelihood model: `aic` holds AICc on the trials' likelihood; `chi2` holds the
deviance -2 log L; `c_hat` is 1 (no over-dispersion factor: the model estimates its noise);
`n_boot` is the number of sweeps simulated to calibrate the intervals.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from analysis.decision import CLEAR_AICC, regions
from analysis.inference import Inference
from analysis.noise import comparison_text
from analysis.pipeline import Analysis
from analysis.plotting import finite_or_none
from analysis.steps import critical_text, regimes_text
from analysis.verdict import warmup_text

MODEL_NAMES = ("linear", "sqrt", "power", "saturating", "constant", "curved")


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


def best_lr_records(best: pd.DataFrame, effective_factor: float | None = None) -> list[dict]:
    """fit.json's best_lr list: the contract's keys first, then extras."""
    out = []
    for _, r in best.iterrows():
        lr = finite_or_none(r["lr"])
        mu = finite_or_none(r.get("mu_model"))
        out.append(
            {
                "batch_size": int(r["batch_size"]),
                "lr": lr,
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
                "bootstrap": "none",  # kept for old readers: the interval is a profile likelihood
                "n_not_reached": int(r.get("n_not_reached", 0) or 0),
                "effective_lr": None
                if lr is None or effective_factor is None
                else lr * effective_factor,
                "in_fit": bool(r["in_fit"]),
                "edge_side": r["edge_side"] if isinstance(r["edge_side"], str) else None,
                "lr_model": None if mu is None else 10**mu,
                "floor": finite_or_none(r["floor"]),
                "noise_sd": finite_or_none(r["noise_sd"]),
                "window_decades": finite_or_none(r.get("window_decades")),
                "scatter": finite_or_none(r.get("scatter")),
            }
        )
    return out


def _models(inf: Inference) -> dict:
    models: dict[str, dict] = {}
    for name in MODEL_NAMES:
        r = inf.rules.get(name)
        entry: dict[str, Any] = {
            "aic": None if r is None else r.aicc,
            "aicc": None if r is None else r.aicc,
            "bic": None if r is None else -2 * r.loglik + r.k * np.log(max(inf.n_model_trials, 1)),
            "chi2": None if r is None else -2 * r.loglik,
            "loglik": None if r is None else r.loglik,
            "k": None if r is None else r.k,
            "lr_at_min_batch": None if inf.min_batch is None else inf.lr_at(name, inf.min_batch),
            "converged": None if r is None else r.converged,
        }
        if name in ("constant", "curved") and r is None:
            continue
        models[name] = entry
    models["saturating"].update(
        {"lr_max": inf.lr_max, "b_noise": inf.b_noise, "b_noise_ci": list(inf.b_noise_ci)}
    )
    if "curved" in models:
        models["curved"]["peak_batch_size"] = inf.peak_b
    return models


def _calibration(inf: Inference) -> dict | None:
    cal = inf.alpha_cal
    if cal is None:
        return None
    mu = inf.mu_cal
    return {
        "replicates": cal.replicates,
        "alpha_coverage_chi2": cal.coverage,
        "alpha_threshold": cal.threshold,
        "alpha_widened": cal.widened,
        "alpha_ci_chi2": list(inf.alpha_ci_chi2),
        "alpha_ci_same_noise": (
            None if inf.alpha_ci_same_noise is None else list(inf.alpha_ci_same_noise)
        ),
        "noise_drift": inf.noise_drift,
        "lr_coverage_chi2": None if mu is None else mu.coverage,
        "lr_threshold": None if mu is None else mu.threshold,
        "failed": cal.n_failed,
    }


def _warmup(a: Analysis) -> dict | None:
    wt = a.inference.warmup
    if wt is None:
        return None
    return {
        "reference": wt.reference,
        "levels": list(wt.levels),
        "shift_decades": list(wt.shift_mu),
        "shift_decades_ci": [list(c) for c in wt.shift_mu_ci],
        "floor_shift": list(wt.shift_floor),
        "floor_shift_ci": [list(c) for c in wt.shift_floor_ci],
        "joint_test": {"stat": wt.joint_stat, "df": wt.joint_df, "p": wt.joint_p},
        "shared_test": {"stat": wt.shared_stat, "p": wt.shared_p},
        "per_batch": wt.per_batch.to_dict(orient="records"),
        "text": warmup_text(wt, a.metric),
    }


def fit_json(a: Analysis) -> dict:
    """The fit.json document (see the module docstring)."""
    inf, dec = a.inference, a.decision
    doc = {
        "metric": a.metric,
        "best_lr": best_lr_records(a.best, a.optimizer.effective_factor),
        "power_law": {
            "alpha": inf.alpha,
            "alpha_ci": list(inf.alpha_ci),
            "lr_at_min_batch": None
            if inf.min_batch is None
            else inf.lr_at("power", inf.min_batch),
        },
        "models": _models(inf),
        "best_model": inf.best_model,
        "verdict": a.verdict.verdict,
        # extras
        "maximize": a.maximize,
        "verdict_text": a.verdict.paragraph,
        "verdict_reason": dec.reason,
        "margin": dec.margin,
        "margins": {k: list(v) for k, v in regions(dec.margin).items()},
        "clear_aicc": CLEAR_AICC,
        "undecided": None
        if dec.verdict != "inconclusive"
        else {
            "candidates": list(dec.candidates),
            "half_width": dec.half_width,
            "needed_half_width": dec.needed_half_width,
            "trials_factor": dec.trials_factor,
            "range_factor": dec.range_factor,
        },
        "calibration": _calibration(inf),
        "linear_range": a.verdict.linear_range,
        "notes": list(a.verdict.notes),
        "fit_batch_sizes": [int(b) for b in a.best.loc[a.best["in_fit"], "batch_size"]],
        "min_batch": inf.min_batch,
        "c_hat": 1.0,
        "n_boot": a.n_boot,
        "model": {
            "cut": inf.cut,
            "n_trials": inf.n_model_trials,
            "ref_batch_size": None if inf.ref_log_b is None else 10**inf.ref_log_b,
            "basin_width_decades": inf.basin_width,
            "resid_df": inf.resid_df,
            "log_scale": inf.log_scale,
        },
        "rule_anchor": None
        if a.anchor is None
        else {"batch_size": a.anchor.batch, "lr": a.anchor.lr0, "source": a.anchor.source},
        "rule_table": a.rules.to_dict(orient="records"),
        "warmup": a.warmup.to_dict(orient="records"),
        "warmup_test": _warmup(a),
        "learning_curves": a.curves.panels.to_dict(orient="records"),
        "load": dict(vars(a.load)),
        "results_dir": a.results_dir,
        "objective": a.objective,
        "optimizer": {
            "name": a.optimizer.name,
            "momentum": a.optimizer.momentum,
            "effective_lr_factor": a.optimizer.effective_factor,
        },
        "no_lr_change": None
        if a.no_change is None
        else {"result": a.no_change.result, "text": a.no_change.text},
        "surge": _surge(a),
        "measured_noise_scale": _noise(a),
        "steps_to_target": _steps(a),
    }
    return jsonable(doc)


def _surge(a: Analysis) -> dict:
    inf = a.inference
    detected = a.decision.reason == "curved"
    if not detected:
        return {"detected": False}
    return {
        "detected": True,
        "b_peak": inf.peak_b,
        "lr_peak": None if inf.peak_b is None else inf.lr_at("curved", inf.peak_b),
        "d_aicc": min(r.aicc for m, r in inf.rules.items() if m != "curved")
        - inf.rules["curved"].aicc,
    }


def _noise(a: Analysis) -> dict | None:
    """B_simple at each batch size's best lr, beside the fitted B_noise."""
    if a.noise is None:
        return None
    inf = a.inference
    ratio = None if a.noise.median is None or inf.b_noise is None else a.noise.median / inf.b_noise
    return {
        "per_batch": a.noise.table.to_dict(orient="records"),
        "median": a.noise.median,
        "range": list(a.noise.range) if a.noise.range else None,
        "b_noise_fit": inf.b_noise,
        "b_noise_fit_ci": list(inf.b_noise_ci),
        "ratio_to_fit": ratio,
        "epoch": "final" if a.noise.level is None else "equal progress",
        "train_loss_level": a.noise.level,
        "ci": list(a.noise.ci),
        "text": comparison_text(a.noise, inf.b_noise, inf.b_noise_ci),
    }


def _steps(a: Analysis) -> dict | None:
    """The steps-to-target curve, its regimes and the S_min (1 + B_crit / B) fit."""
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
    c = a.steps.critical
    return {
        "target": a.steps.target,
        "per_batch": a.steps.table.to_dict(orient="records"),
        "regimes": regimes,
        "critical": None
        if c is None
        else {
            "s_min": c.s_min,
            "b_crit": c.b_crit,
            "b_crit_ci": list(c.b_crit_ci),
            "rmse_decades": c.rmse,
            "text": critical_text(c),
        },
    }
