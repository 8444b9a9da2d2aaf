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
"""
