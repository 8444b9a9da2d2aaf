"""The exact-answer check of the verdict: real sweeps of the quadratic problem, whose best lr per
batch size is computed exactly (trainables.quadratic.best_lr).

    python -m benchmarks.bench_quadratic [--seeds 1 2 3 4 5] [--design adaptive|fixed]
                                         [--runner sweep|loop] [--pin-trials 8]

Runs `python -m sweep --config sweep/configs/quadratic.yaml` (grid 10x too low, then the design
loop, every trial its own seed; or with `--design fixed` Optuna's 12 trials per batch size, all
with the sweep's one seed) over two batch ranges, B = 4..64 (the exact optimum is linear in B: the
right verdict is `linear`) and B = 4..1024 (linear, then flat near the stability limit: the
right verdict is `neither`), once per `--seed`; once decided, the loop pins each optimum with
`--pin-trials` trials per batch size (`adaptive.pin_trials`; 0: none); then it analyses each
sweep as `python -m analysis.fit_rule` does and prints, per sweep, the verdict, alpha with its
interval and each batch size's estimate against the exact optimum; then the share of right
verdicts, of per-batch intervals that hold the exact optimum, and of estimates within 1.25x.
`--runner loop` runs the same design loop in this process instead (`sweep.design.run_loop`:
one trial at a time, the same real training, no Ray, no Optuna, no grid trial; the trials are
kept as NAME.csv; a median 24 s a sweep against the real sweeps' 34 s on a 2-core VM, and
two can run side by side): for trying a change to the model or the loop before the real
sweeps, over 15 seeds or more (the loop's path changes with every early trial:
over five seeds, two runs of one loop gave 35 and 29 of 40 covered). Not a test: nothing is
asserted.
"""

from __future__ import annotations

import argparse
import math
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.decision import decide
from analysis.inference import infer
from analysis.load import load_results
from benchmarks.machine import cpu_model
from benchmarks.resample import BOOT_REPS, percentile_interval, resamples
from trainables.quadratic import best_lr

RANGES = {"4..64": ([4, 16, 64], "linear"), "4..1024": ([4, 16, 64, 256, 1024], "neither")}
ROOT = Path(__file__).resolve().parents[1]


BUDGET_TRIALS, BUDGET_MINUTES = 150, 10
PIN_TRIALS = 8  # per batch size once decided (adaptive.pin_trials), for the per-batch table
ADAPTIVE = (
    "design=adaptive",
    "optuna.trials_per_batch_size=0",
    "confirm.top_k=0",
    f"budget={{trials: {BUDGET_TRIALS}, minutes: {BUDGET_MINUTES}}}",
)


def run_sweep(
    storage: Path, name: str, batches: list[int], seed: int, design: str, pin_trials: int = 0
) -> float:
    t0 = time.perf_counter()
    cmd = [
        sys.executable,
        "-m",
        "sweep",
        "--config",
        "sweep/configs/quadratic.yaml",
        "--storage",
        str(storage),
        "--name",
        name,
        "--seed",
        str(seed),
        "--no-report",
        "--set",
        f"batch_sizes=[{','.join(map(str, batches))}]",
    ]
    if design == "adaptive":
        cmd += [arg for setting in ADAPTIVE for arg in ("--set", setting)]
        cmd += ["--set", f"adaptive.pin_trials={pin_trials}"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-15:])
        raise SystemExit(f"sweep {name} failed (exit {proc.returncode}):\n{tail}")
    return time.perf_counter() - t0


def run_in_process(
    path: Path, batches: list[int], seed: int, pin_trials: int = 0
) -> tuple[float, pd.DataFrame]:
    """The design loop without Ray (see the module docstring): its trials, kept at `path`
    (read back when it exists) and the seconds it took."""
    if path.exists():
        return 0.0, pd.read_csv(path)
    from benchmarks.bench_design import quadratic_problem
    from sweep.design import Budget, _frame, run_loop

    t0 = time.perf_counter()
    run, _, centre, _ = quadratic_problem(tuple(batches))
    budget = Budget(trials=BUDGET_TRIALS)
    res = run_loop(run, batches, [0.0], centre, budget, seed=seed, pin_trials=pin_trials)
    trials = _frame(res.trials, "val_loss")
    path.parent.mkdir(parents=True, exist_ok=True)
    trials.to_csv(path, index=False)
    return time.perf_counter() - t0, trials


def print_per_batch(rows: list[tuple[str, int, float, bool, bool, int]]) -> None:
    """Per range and batch size: the estimates' mean and sd of log10(estimate / exact) (the
    model's bias shows where the basin is not the model's shape), the shares covered and within
    1.25x, and the median trials the batch size got."""
    print(
        "\nper batch size: range, B, sweeps, mean and sd of log10(estimate / exact), covered, "
        "within 1.25x, median trials"
    )
    for label, b in dict.fromkeys((label, b) for label, b, *_ in rows):  # in the order run
        sel = [r for r in rows if r[0] == label and r[1] == b]
        errs = [r[2] for r in sel]
        sd = statistics.stdev(errs) if len(errs) > 1 else float("nan")
        print(
            f"{label:>8} B={b:<5} {len(sel):>3} {statistics.fmean(errs):+.3f} {sd:.3f} "
            f"{sum(r[3] for r in sel) / len(sel):.2f} {sum(r[4] for r in sel) / len(sel):.2f} "
            f"{statistics.median(r[5] for r in sel):.0f}"
        )


def share_intervals(
    per_sweep: list[tuple[int, int, int]], level: float = 0.9
) -> tuple[tuple[float, float], tuple[float, float]] | None:
    """Percentile intervals of the shares covered and within 1.25x, whole sweeps resampled
    (the optima of one sweep share its trials and its fit, so they are not independent draws).
    `per_sweep` holds each sweep's counts (covered, within 1.25x, optima); None with fewer than
    MIN_UNITS sweeps."""
    counts = np.array(per_sweep).reshape(-1, 3)
    pick = resamples(len(counts))
    if pick is None or counts[:, 2].sum() == 0:
        return None
    tot = counts[pick].sum(axis=1)
    tot = tot[tot[:, 2] > 0]
    covered, within = (percentile_interval(tot[:, k] / tot[:, 2], level) for k in (0, 1))
    return covered, within


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    p.add_argument("--storage", type=Path, default=None)
    p.add_argument("--replicates", type=int, default=200)
    p.add_argument("--design", choices=["adaptive", "fixed"], default="adaptive")
    p.add_argument("--runner", choices=["sweep", "loop"], default="sweep")
    p.add_argument("--pin-trials", type=int, default=PIN_TRIALS)
    a = p.parse_args(argv)
    if a.runner == "loop" and a.design != "adaptive":
        p.error("--runner loop runs the design loop: use it with --design adaptive")
    storage = a.storage or Path(tempfile.mkdtemp(prefix="bench-quadratic-"))
    exact = {b: best_lr(b) for b in (4, 16, 64, 256, 1024)}
    print(
        f"# {cpu_model()}, python {platform.python_version()}, design {a.design}, runner "
        f"{a.runner}; exact optimum: " + ", ".join(f"B={b}: {v:.4g}" for b, v in exact.items())
    )
    right = n_sweeps = 0
    by_sweep: list[tuple[int, int, int]] = []  # each sweep's covered, within 1.25x, optima
    widths: list[float] = []
    per_batch: list[tuple[str, int, float, bool, bool, int]] = []  # range, B, error, in, close, n
    for label, (batches, expected) in RANGES.items():
        for seed in a.seeds:
            name = f"q{batches[-1]}-{a.design}-s{seed}"
            if a.runner == "loop":
                path = storage / f"{name}.csv"
                secs, trials = run_in_process(path, batches, seed, a.pin_trials)
            else:
                secs = (
                    0.0
                    if (storage / name).exists()
                    else run_sweep(storage, name, batches, seed, a.design, a.pin_trials)
                )
                trials = load_results(storage / name).trials
            inf = infer(trials, "val_loss", replicates=a.replicates, seed=seed)
            dec = decide(inf)
            n_sweeps += 1
            right += dec.verdict == expected
            lo, hi = inf.alpha_ci
            cells = []
            sweep_in = sweep_near = sweep_n = 0  # this sweep's covered, within 1.25x, optima
            for r in inf.table.itertuples():
                x = exact[int(r.batch_size)]
                sweep_n += 1
                if r.lr is None or r.lr != r.lr:
                    cells.append(f"B={r.batch_size} not located")
                    continue
                inside = (r.lr_ci_lo is None or r.lr_ci_lo <= x) and (
                    r.lr_ci_hi is None or x <= r.lr_ci_hi
                )
                ratio = float(r.lr) / x
                if r.lr_ci_lo is not None and r.lr_ci_hi is not None:
                    widths.append(math.log10(float(r.lr_ci_hi) / float(r.lr_ci_lo)))
                near = 1 / 1.25 <= ratio <= 1.25
                sweep_in += inside
                sweep_near += near
                n_at_b = int((trials["batch_size"] == r.batch_size).sum())
                per_batch.append(
                    (label, int(r.batch_size), math.log10(ratio), bool(inside), near, n_at_b)
                )
                cells.append(
                    f"B={r.batch_size} x{ratio:.2f}{'' if inside else ' MISS'}"
                    f"{' EDGE' if r.at_edge else ''}"
                )
            by_sweep.append((sweep_in, sweep_near, sweep_n))
            alpha = (
                "-"
                if inf.alpha is None
                else (
                    f"{inf.alpha:.2f} [{'-inf' if lo is None else f'{lo:.2f}'}, "
                    f"{'inf' if hi is None else f'{hi:.2f}'}]"
                )
            )
            print(
                f"{label:>8} seed {seed}: {len(trials)} trials ({secs:.0f} s), verdict "
                f"{dec.verdict:<12} (right: {expected}), alpha {alpha}; {'; '.join(cells)}",
                flush=True,
            )
    covered, close, n_batch = (sum(c[k] for c in by_sweep) for k in range(3))
    print(
        f"\nright verdicts {right}/{n_sweeps}; per-batch intervals holding the exact optimum "
        f"{covered}/{n_batch} = {covered / n_batch:.2f}; estimates within 1.25x "
        f"{close}/{n_batch} = {close / n_batch:.2f}; closed intervals' median width "
        f"{statistics.median(widths) if widths else float('nan'):.2f} decade"
    )
    shares = share_intervals(by_sweep)
    if shares is not None:
        (c_lo, c_hi), (w_lo, w_hi) = shares
        print(
            f"90% intervals over the sweeps (bootstrap of whole sweeps, {BOOT_REPS} resamples): "
            f"covered {c_lo:.2f} to {c_hi:.2f}, within 1.25x {w_lo:.2f} to {w_hi:.2f}"
        )
    print_per_batch(per_batch)
    print(f"results: {storage}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
