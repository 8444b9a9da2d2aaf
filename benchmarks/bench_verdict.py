"""Is the verdict right, and do its intervals cover? Many planted sweeps per scenario.

    python -m benchmarks.bench_verdict [--reps 100] [--scenarios linear sqrt ...] [--jobs 2]

For every scenario of `analysis.planted` (Optuna-like adaptive designs, one seed, grid told
first, two warmups, asymmetric basins, divergence cliffs, an intermediate alpha, saturating,
constant, underpowered, seed noise growing with the lr, a clean 13-lr grid) it simulates
`--reps` sweeps, runs the analysis (`analysis.inference.infer` + `analysis.decision.decide`)
and prints:

- alpha: the share of replicates whose 95% interval holds the planted alpha (goal >= 0.9);
- mu_B: the share of located per-batch intervals that hold the planted optimum, and their
  median width in decades (closed intervals);
- wrong: decided verdicts that contradict the planted law (goal <= 2%); right; undecided;
- the median alpha interval width and analysis seconds per sweep.
"""

from __future__ import annotations

import argparse
import math
import platform
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import scipy

from analysis.decision import MARGIN, decide
from analysis.inference import infer
from analysis.planted import right_verdict, scenarios, simulate


def one(args: tuple[str, int, int, float]) -> dict:
    name, seed, replicates, margin = args
    sc = scenarios()[name]
    trials = simulate(sc, seed)
    t0 = time.perf_counter()
    inf = infer(trials, "val_loss", replicates=replicates, seed=seed)
    dec = decide(inf, margin)
    secs = time.perf_counter() - t0
    right = sc.expect if sc.alpha is None else right_verdict(sc.alpha, margin)
    out = {
        "verdict": dec.verdict,
        "right": right,
        "secs": secs,
        "alpha": inf.alpha,
        "alpha_cover": None,
        "width": None,
        "mu_cover": [],
        "mu_width": [],
        "reason": dec.reason,
    }
    if inf.alpha is not None and sc.alpha is not None:
        lo, hi = inf.alpha_ci
        lo = -math.inf if lo is None else lo
        hi = math.inf if hi is None else hi
        out["alpha_cover"] = lo <= sc.alpha <= hi
        out["width"] = hi - lo
    for _, r in inf.table.iterrows():
        if not r["in_fit"]:
            continue
        truth = sc.truth.optimum(r["batch_size"], 0.0)
        lo = -math.inf if r["lr_ci_lo"] is None else math.log10(r["lr_ci_lo"])
        hi = math.inf if r["lr_ci_hi"] is None else math.log10(r["lr_ci_hi"])
        out["mu_cover"].append(lo <= truth <= hi)
        if math.isfinite(hi - lo):
            out["mu_width"].append(hi - lo)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reps", type=int, default=100)
    p.add_argument("--replicates", type=int, default=100, help="calibration simulations")
    p.add_argument("--scenarios", nargs="*", default=None)
    p.add_argument("--margin", type=float, default=MARGIN)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--seed", type=int, default=1000)
    a = p.parse_args(argv)
    names = a.scenarios or list(scenarios())
    print(
        f"# {platform.processor() or platform.machine()}, python {platform.python_version()}"
        f", numpy {np.__version__}, scipy {scipy.__version__}; {a.reps} sweeps per "
        f"scenario, {a.replicates} calibration replicates, margin {a.margin}"
    )
    print(
        f"{'scenario':<20} {'alpha cov':>9} {'mu cov':>7} {'mu wd':>6} {'wrong':>6} {'right':>6} "
        f"{'undec':>6} {'width':>6} {'s/sweep':>7}  verdicts"
    )
    total_wrong = total = 0
    with ProcessPoolExecutor(a.jobs) as pool:
        for name in names:
            jobs = [(name, a.seed + i, a.replicates, a.margin) for i in range(a.reps)]
            res = list(pool.map(one, jobs))
            cov = [r["alpha_cover"] for r in res if r["alpha_cover"] is not None]
            mu = [c for r in res for c in r["mu_cover"]]
            mu_w = [w for r in res for w in r["mu_width"]]
            wrong = [r for r in res if r["verdict"] not in ("inconclusive", r["right"])]
            right = [r for r in res if r["verdict"] == r["right"]]
            und = [r for r in res if r["verdict"] == "inconclusive"]
            widths = [r["width"] for r in res if r["width"] is not None]
            counts = {
                v: sum(r["verdict"] == v for r in res)
                for v in ("linear", "sqrt", "neither", "inconclusive")
            }
            total_wrong += len(wrong)
            total += len(res)
            print(
                f"{name:<20} {np.mean(cov) if cov else float('nan'):>9.2f} "
                f"{np.mean(mu) if mu else float('nan'):>7.2f} "
                f"{np.median(mu_w) if mu_w else float('nan'):>6.2f} {len(wrong) / len(res):>6.2f} "
                f"{len(right) / len(res):>6.2f} {len(und) / len(res):>6.2f} "
                f"{np.median(widths) if widths else float('nan'):>6.2f} "
                f"{np.median([r['secs'] for r in res]):>7.2f}  {counts}",
                flush=True,
            )
    print(f"wrong verdicts overall: {total_wrong}/{total} = {total_wrong / max(total, 1):.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
