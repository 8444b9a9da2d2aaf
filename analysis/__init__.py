"""What the results say: load -> one model of all trials -> verdict -> report.

Run it with `python -m analysis.fit_rule --results DIR` (see `analysis.fit_rule`). Modules, in
the order data flows through them:

- `analysis.load`: a Ray Tune results folder -> tidy tables (one row per trial-epoch, one per
  trial), reading only each trial's `params.json` and `result.json`; never unpickles anything.
- `analysis.basin`: the likelihood model of every finished trial (a basin in log lr around an
  optimum per batch size, floors, asymmetric curvatures, seed noise, warmup shifts, diverged
  trials censored) and its maximum-likelihood fit.
- `analysis.profile`: profile-likelihood intervals, calibrated by simulating the sweep's own
  design.
- `analysis.inference`: the numbers: best lr per batch size, the rules for mu(B) (linear,
  sqrt, constant, power law, saturating, log-quadratic) compared by AICc, alpha and B_noise
  with their intervals; `analysis.warmup_test`: the joint warmup test.
- `analysis.decision`: the verdict as an equivalence decision on alpha;
  `analysis.verdict`: its words, and what would decide an inconclusive one.
- `analysis.compare`: the Goyal-style rule table, the warmup table and the learning curves of
  the article experiment (the linear-scaling grid).
- `analysis.optimizers`: which optimizer ran; momentum's effective lr.
- `analysis.noise`: the measured gradient noise scale at each best lr, beside the fitted
  B_noise; `analysis.steps`: steps to a target against batch size, its regimes and
  S_min (1 + B_crit / B).
- `analysis.pipeline`: all of the above as one call, `analyze(results_dir) -> Analysis`.
- `analysis.schema` (fit.json), `analysis.content` (what the report says), `analysis.render`
  (Markdown, HTML), `analysis.figures` and `analysis.plotting` (figures), `analysis.report`
  (writes them all).
- `analysis.fit_rule`: the command line; `analysis.compare_optimizers`: one report over
  several sweeps (e.g. SGD and Adam).
- `analysis.synthetic`: results folders from planted laws (tests, demo);
  `analysis.planted`: planted sweeps under the designs the sweep really runs (benchmark).

In a notebook (README, "The results in a notebook"):

    from analysis import load_results, analyze
    res = load_results("results/default")    # res.trials, res.epochs: pandas DataFrames
    a = analyze("results/default", n_boot=0)  # a.best, a.verdict.verdict, a.inference.alpha

`import analysis` itself imports nothing else and changes nothing: the names above are looked
up in their modules on first use.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "load_results": "analysis.load",  # results folder -> Results (trials, epochs, summary)
    "Results": "analysis.load",
    "AnalysisError": "analysis.load",
    "analyze": "analysis.pipeline",  # results folder -> Analysis (best lrs, rules, verdict)
    "Analysis": "analysis.pipeline",
    "write_report": "analysis.report",  # Analysis -> report.md, report.html, fit.json, tables
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> object:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'analysis' has no attribute '{name}'")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
