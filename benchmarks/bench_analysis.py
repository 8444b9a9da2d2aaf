"""Benchmark of the full analysis on a large sweep: 2,000 trials x 20 epochs (target: < 30 s).

    .venv/bin/python -m benchmarks.bench_analysis [--runs 3] [--n-boot 200] [--keep DIR]

Writes a synthetic results folder in Ray Tune's layout (analysis.synthetic, saturating law,
8 batch sizes x 2 warmups x 5 seeds x 25 lrs = 2,000 trials of 20 epochs, one checkpoint folder
each), then times what `python -m analysis.fit_rule` does: load, the likelihood model of all
trials (per-batch optima with calibrated profile intervals, the rules, alpha's interval and its
calibration by simulation, the warmup test), the verdict, the comparison tables, figures,
report.md/html and fit.json. Prints every phase of every run,
the median of the total over n runs, the machine and the versions. Not a test: nothing is
asserted.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import scipy

from analysis.inference import infer
from analysis.load import load_results
from analysis.pipeline import analyze_trials, check_metric
from analysis.report import write_report
from analysis.synthetic import DOUBLING, Law, SweepSpec, write_results
from benchmarks.machine import cpu_model

SPEC = SweepSpec(
    batch_sizes=DOUBLING,  # 8 batch sizes
    warmups=(0.0, 1.0),
    seeds=5,
    lr_offsets=tuple(np.round(np.linspace(-1.5, 1.5, 24), 6)),  # + 1 grid lr = 25 lrs
    center_alpha=0.5,
    epochs=20,
)
LAW = Law("saturating", lr_max=0.09, b_noise=64.0)


def run_once(results: Path, out: Path, n_boot: int) -> dict[str, float]:
    """One full analysis, timed phase by phase (seconds)."""
    t: dict[str, float] = {}
    t0 = time.perf_counter()
    res = load_results(results)
    check_metric(res.epochs, res.trials, "val_loss")
    t["load"] = time.perf_counter() - t0
    t1 = time.perf_counter()
    infer(res.trials, "val_loss", replicates=n_boot)  # the model alone, for its share
    t["model+calibration"] = time.perf_counter() - t1
    t1 = time.perf_counter()
    a = analyze_trials(res.trials, res.epochs, res.summary, str(results), "val_loss", n_boot)
    t["whole analysis (model again, tables, verdict)"] = time.perf_counter() - t1
    t1 = time.perf_counter()
    write_report(a, out)
    t["report+figures"] = time.perf_counter() - t1
    t["total"] = time.perf_counter() - t0 - t["model+calibration"]  # what the CLI does
    t["_n_trials"] = len(res.trials)
    t["_n_rows"] = len(res.epochs)
    t["_verdict"] = a.verdict.verdict
    return t


def machine() -> str:
    return f"{platform.system()} {platform.release()}, {cpu_model()}, {os.cpu_count()} CPUs"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--n-boot", type=int, default=200)
    p.add_argument("--keep", type=Path, default=None, help="write the results folder here")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp) / "results"
        t0 = time.perf_counter()
        if not (root / "synthetic").exists():
            write_results(root, LAW, SPEC)
        print(f"results folder {root} ready in {time.perf_counter() - t0:.1f} s")
        totals = []
        for i in range(args.runs):
            t = run_once(root, Path(tmp) / f"report{i}", args.n_boot)
            totals.append(t["total"])
            phases = ", ".join(f"{k} {v:.2f}" for k, v in t.items() if not k.startswith("_"))
            print(
                f"run {i + 1}: {t['_n_trials']} trials, {t['_n_rows']} trial-epoch rows, "
                f"verdict {t['_verdict']}; seconds: {phases}"
            )
    print(
        f"\nfull analysis, {args.runs} runs, n_boot={args.n_boot}: median "
        f"{statistics.median(totals):.2f} s (min {min(totals):.2f}, max {max(totals):.2f}); "
        f"target < 30 s on 2 cores"
    )
    print(f"machine: {machine()}")
    print(
        f"versions: python {platform.python_version()}, numpy {np.__version__}, pandas "
        f"{pd.__version__}, scipy {scipy.__version__}, matplotlib {matplotlib.__version__}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
