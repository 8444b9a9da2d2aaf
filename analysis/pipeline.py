"""The whole analysis as one call: results folder -> `Analysis` (every table the report needs).

    from analysis.pipeline import analyze
    a = analyze("results/default", metric="val_loss")
    a.verdict.verdict, a.inference.alpha, a.inference.alpha_ci, a.best

Steps: `analysis.load` (JSON only) -> `analysis.inference` (one likelihood model of every
finished trial: best lr per batch size, rules, alpha, calibration, warmup test) ->
`analysis.decision` (equivalence verdict) -> `analysis.verdict` (its words), beside the
Goyal-style rule table, the learning curves, the optimizer, the measured noise scale and
steps to target. `objective="steps_to_target"` ranks trials by the fewest steps to the
sweep's target instead of the final metric (Shallue et al. 2018; trials that never reached it
count as worse than any that did).

`analysis.fit_rule` is the command line around it; `analysis.report` turns it into files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from analysis.compare import Anchor, Curves, learning_curves, rule_table, warmup_table
from analysis.decision import MARGIN, MAX_MARGIN, Decision, decide
from analysis.inference import Inference, infer
from analysis.load import (
    CONFIG_COLUMNS,
    AnalysisError,
    LoadSummary,
    load_results,
    maximize_metric,
)
from analysis.noise import NoiseScale, measured_noise_scale
from analysis.optimizers import OptimizerInfo, optimizer_info
from analysis.steps import STEPS, StepsCurve, has_steps, steps_curve
from analysis.verdict import Verdict, explain, no_change_text
from trainables.contract import METRIC_KEYS
from trainables.contract import OBJECTIVES as CONTRACT_OBJECTIVES

# result.json columns that are bookkeeping, not metrics one could choose with --metric
NOT_METRICS = frozenset(
    {
        "trial",
        "training_iteration",
        "time_this_iter_s",
        "time_total_s",
        *CONFIG_COLUMNS,
        *(set(METRIC_KEYS) - set(CONTRACT_OBJECTIVES) - {"train_time_s"}),
    }
)
OBJECTIVES = ("metric", STEPS)  # final value of --metric, or fewest steps to the target


@dataclass(frozen=True)
class NoChange:
    """The test of 'no lr change needed' (alpha = 0), the article's claim for Adam."""

    result: str  # supported | rejected | inconclusive
    text: str


@dataclass(frozen=True)
class Analysis:
    """Everything `analysis.report` writes, computed once."""

    results_dir: str
    metric: str
    maximize: bool
    n_boot: int  # simulated sweeps used to calibrate the intervals
    load: LoadSummary
    trials: pd.DataFrame
    epochs: pd.DataFrame
    best: pd.DataFrame  # one row per batch size (analysis.inference.TABLE_COLUMNS)
    inference: Inference
    decision: Decision
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
    margin: float = MARGIN


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
    targeted = (
        "target_metric" in trials.columns
        and (trials["target_metric"].fillna("").astype(str) != "").any()
    )
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
    n_boot: int = 200,
    seed: int = 0,
    objective: str = "metric",
    margin: float = MARGIN,
) -> Analysis:
    """Load, fit the model of all trials, decide, and build the comparison tables."""
    if objective not in OBJECTIVES:
        raise AnalysisError(
            f"unknown objective '{objective}'; choose from {', '.join(OBJECTIVES)}"
        )
    if not 0 < margin < MAX_MARGIN:
        raise AnalysisError(
            f"margin {margin:g} is outside (0, {MAX_MARGIN:g}): at {MAX_MARGIN:g} the linear "
            f"and sqrt margins around 1 and 0.5 touch; use e.g. --margin 0.2"
        )
    res = load_results(results_dir)
    if objective == STEPS or metric == STEPS:
        check_finished(res.trials)
        check_steps(res.trials)
        metric, objective = STEPS, STEPS
    else:
        check_metric(res.epochs, res.trials, metric)
    return analyze_trials(
        res.trials,
        res.epochs,
        res.summary,
        str(results_dir),
        metric,
        n_boot,
        seed,
        objective,
        margin,
    )


def analyze_trials(
    trials: pd.DataFrame,
    epochs: pd.DataFrame,
    summary: LoadSummary,
    results_dir: str,
    metric: str,
    n_boot: int = 200,
    seed: int = 0,
    objective: str = "metric",
    margin: float = MARGIN,
) -> Analysis:
    """`analyze` on tables already loaded (the sweep's design loop calls it too)."""
    info = optimizer_info(trials)
    maximize = maximize_metric(metric)
    inf = infer(trials, metric, maximize, replicates=n_boot, seed=seed, constant=info.adaptive)
    dec = decide(inf, margin)
    best = inf.table
    rules, anchor = rule_table(trials, best, metric)
    wt = inf.warmup
    no_change = None
    if info.adaptive:
        no_change = NoChange(*no_change_text(inf))
    return Analysis(
        results_dir=results_dir,
        metric=metric,
        maximize=maximize,
        n_boot=n_boot,
        load=summary,
        trials=trials,
        epochs=epochs,
        best=best,
        inference=inf,
        decision=dec,
        verdict=explain(inf, dec),
        rules=rules,
        anchor=anchor,
        warmup=warmup_table(trials, metric, None if wt is None else wt.per_batch),
        curves=learning_curves(epochs, trials, metric),
        objective=objective,
        optimizer=info,
        no_change=no_change,
        noise=measured_noise_scale(trials, best, epochs),
        steps=steps_curve(trials),
        margin=margin,
    )
