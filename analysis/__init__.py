"""What the results say: load -> best lr per batch size -> rule fits -> report.

Run it with `python -m analysis.fit_rule --results DIR` (see `analysis.fit_rule`). Modules, in
the order data flows through them:

- `analysis.load`: a Ray Tune results folder -> tidy tables (one row per trial-epoch, one per
  trial), reading only each trial's `params.json` and `result.json`; never unpickles anything.
- `analysis.best`: the best learning rate of every batch size, below grid resolution (parabola
  in log10 lr), with a bootstrap confidence interval, the edge flag and the divergence edge.
- `analysis.fit`: weighted fits of the linear, sqrt, free power-law and saturating rules to the
  best learning rates, AIC comparison and the verdict.
- `analysis.compare`: the Goyal-style rule table, the warmup comparison and the learning curves
  of the article experiment (the linear-scaling grid).
- `analysis.optimizers`: which optimizer ran; momentum's effective lr; for Adam the "no lr
  change" test (alpha = 0, fitted in `analysis.fit` beside linear and sqrt) and the surge.
- `analysis.noise`: the measured gradient noise scale B_simple at each best lr, beside the
  fitted B_noise.
- `analysis.steps`: steps to a target against batch size (Shallue et al.) and its regimes.
- `analysis.pipeline`: all of the above as one call, `analyze(results_dir) -> Analysis`.
- `analysis.figures`: the report's figures (matplotlib, Agg backend, no pyplot).
- `analysis.report`: `report.md`, a self-contained `report.html` and `fit.json`.
- `analysis.fit_rule`: the command line.
- `analysis.compare_optimizers`: one report over several sweeps (e.g. SGD and Adam).
- `analysis.synthetic`: results folders generated from planted laws (tests, benchmark, demo).
"""
