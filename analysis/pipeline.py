"""The whole analysis as one function: results folder -> `Analysis` (every table the report needs).

    >>> from analysis.pipeline import analyze
    >>> a = analyze("results/default", metric="val_loss", n_boot=1000)
    >>> a.verdict.verdict, a.fits.alpha, a.best

`objective="steps_to_target"` ranks trials by the fewest steps to the sweep's target instead
of the final metric (Shallue et al. 2018; trials that never reached it are infeasible).

`analysis.fit_rule` is the command line around it; `analysis.report` turns it into files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from analysis.best import estimate_best_lr, maximize_metric
from analysis.compare import Anchor, Curves, learning_curves, rule_table, warmup_table
from analysis.fit import NoChange, RuleFits, Verdict, decide_verdict, fit_rules, no_lr_change
from analysis.load import CONFIG_COLUMNS, AnalysisError, LoadSummary, load_results
from analysis.noise import NoiseScale, measured_noise_scale
from analysis.optimizers import OptimizerInfo, optimizer_info
from analysis.steps import STEPS, StepsCurve, has_steps, steps_curve

# result.json columns that are bookkeeping, not metrics one could choose with --metric
NOT_METRICS = frozenset(
    {
        "trial",
        "epoch",
        "diverged",
        "examples_seen",
        "step",
        "lr_now",
        "timesteps_total",
        "training_iteration",
        "time_this_iter_s",
        "time_total_s",
        "noise_scale",  # a diagnostic (analysis.noise), not an objective
        *CONFIG_COLUMNS,
    }
)
OBJECTIVES = ("metric", STEPS)  # final value of --metric, or fewest steps to the target


@dataclass(frozen=True)
class Analysis:
    """Everything `analysis.report` writes, computed once."""

    results_dir: str
    metric: str
    maximize: bool
    n_boot: int
    load: LoadSummary
    trials: pd.DataFrame
    epochs: pd.DataFrame
    best: pd.DataFrame
    fits: RuleFits
    verdict: Verdict
    rules: pd.DataFrame
    anchor: Anchor | None
    warmup: pd.DataFrame
    curves: Curves
    objective: str = "metric"
    optimizer: OptimizerInfo = OptimizerInfo("unknown", None)
    no_change: NoChange | None = None  # alpha = 0 tested (adaptive optimizers)
    noise: NoiseScale | None = None  # measured B_simple at the best lrs
    steps: StepsCurve | None = None  # steps-to-target curve and regimes


def available_metrics(epochs: pd.DataFrame) -> list[str]:
    """Numeric result.json columns that --metric may name."""
    return sorted(
        c
        for c in epochs.columns
        if c not in NOT_METRICS
        and pd.api.types.is_numeric_dtype(epochs[c])
        and not pd.api.types.is_bool_dtype(epochs[c])
    )


def check_metric(epochs: pd.DataFrame, trials: pd.DataFrame, metric: str) -> None:
    """Raise AnalysisError unless the metric exists and some finished trial reports it."""
    check_finished(trials)
    metrics = available_metrics(epochs)
    if metric not in metrics:
        raise AnalysisError(
            f"metric '{metric}' is not in the trials' result.json; choose from "
            f"{', '.join(metrics) or '(no numeric metric found)'}"
        )


def check_finished(trials: pd.DataFrame) -> None:
    """Raise AnalysisError when no trial has finished (done or diverged) yet."""
    fin = trials[trials["status"].isin(("done", "diverged"))]
    if fin.empty:
        s = trials["status"].value_counts()
        raise AnalysisError(
            f"no finished trial yet ({int(s.get('partial', 0))} unfinished, "
            f"{int(s.get('empty', 0))} with no results): wait for the sweep or resume it"
        )


def check_steps(trials: pd.DataFrame) -> None:
    """Raise AnalysisError unless some finished trial reached a target."""
    fin = trials[trials["status"].isin(("done", "diverged"))]
    if has_steps(fin):
        return
    targeted = "target_metric" in trials.columns and (trials["target_metric"].fillna("")
                                                       .astype(str) != "").any()
    if targeted:
        raise AnalysisError(
            "no finished trial reached its target, so steps_to_target cannot rank them; "
            "lower target.value or raise epochs"
        )
    raise AnalysisError(
        "the trials report no steps_to_target: run the sweep with a target, e.g. "
        "`target: {metric: val_acc, value: 0.97}` in the config (or --set target.value=0.97)"
    )


def analyze(
    results_dir: str | Path,
    metric: str = "val_loss",
    n_boot: int = 1000,
    seed: int = 0,
    objective: str = "metric",
) -> Analysis:
    """Load, estimate the best lrs, fit the rules, build the comparison tables."""
    if objective not in OBJECTIVES:
        raise AnalysisError(
            f"unknown objective '{objective}'; choose from {', '.join(OBJECTIVES)}"
        )
    res = load_results(results_dir)
    if objective == STEPS or metric == STEPS:
        check_finished(res.trials)
        check_steps(res.trials)
        metric, objective = STEPS, STEPS
    else:
        check_metric(res.epochs, res.trials, metric)
    info = optimizer_info(res.trials)
    best = estimate_best_lr(res.trials, metric, n_boot=n_boot, seed=seed)
    fits = fit_rules(best, constant=info.adaptive)
    rules, anchor = rule_table(res.trials, best, metric)
    return Analysis(
        results_dir=str(results_dir),
        metric=metric,
        maximize=maximize_metric(metric),
        n_boot=n_boot,
        load=res.summary,
        trials=res.trials,
        epochs=res.epochs,
        best=best,
        fits=fits,
        verdict=decide_verdict(fits, best),
        rules=rules,
        anchor=anchor,
        warmup=warmup_table(res.trials, metric, n_boot=n_boot, seed=seed + 1),
        curves=learning_curves(res.epochs, res.trials, metric),
        objective=objective,
        optimizer=info,
        no_change=no_lr_change(fits) if info.adaptive else None,
        noise=measured_noise_scale(res.trials, best),
        steps=steps_curve(res.trials),
    )
