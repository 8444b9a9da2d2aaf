"""How many trials until the verdict is decided and right: the design loop against a dense grid.

    python -m benchmarks.bench_design [--problem planted|quadratic] [--seeds 1 2 3]

Both methods run the same trials function (one seed per trial) and are analysed as the sweep
does:

- loop: `sweep.design.run_loop` (start from the neighbours, bracket, cover, then the c-optimal
  trial for alpha), refitted after every trial and stopped by its own rule (every batch size
  located, decided twice in a row, and with calibrated 99% intervals);
- grid: a fixed log grid over the same search range (+-GRID_HALF decades around the same
  centre), run whole and analysed once, as a user who fixes the design up front would; the
  count is the smallest of the nested densities GRID_DENSITIES (lrs per batch size) whose
  verdict is decided and right.

Problems: `planted` (analysis.planted's linear truth: asymmetric basin, divergence cliff,
seed noise), `noisy` (the same with 3x the seed noise), `quadratic` (real training of
trainables.quadratic, whose optimum is exact: linear over B = 4..64), `quadratic-expected`
(the same problem's exact expected loss plus Gaussian seed noise as measured on its real
runs, growing with the lr: fast, so many seeds can run). Prints trials per method and seed
and the ratio of the medians.
"""

from __future__ import annotations

import argparse
import math
import platform
import time

import numpy as np

from analysis.decision import decide
from analysis.inference import infer
from analysis.planted import scenarios
from benchmarks.resample import BOOT_REPS, percentile_interval, resamples
from sweep.design import Budget, _frame, run_loop

GRID_DENSITIES = (5, 9, 17, 33)  # lrs per batch size: nested log grids
GRID_HALF = 1.5  # decades on each side of the search centre


def planted_problem(name: str = "linear"):
    sc = scenarios()[name]
    truth = sc.truth
    batches = [8, 16, 32, 64, 128, 256]
    b_min = min(batches)

    def run(b: int, lr: float, w: float, seed: int) -> tuple[float, bool]:
        rng = np.random.default_rng(seed)
        mean, div = truth.loss(b, np.array([math.log10(lr)]), w, b_min)
        return float(mean[0] + rng.normal(0, truth.noise_sd(b, b_min))), bool(div[0])

    centre = {b: math.log10(0.01 * b / 8) for b in batches}  # the linear rule, 0.3 dec. low
    return run, batches, centre, "linear"


def quadratic_problem(batches: tuple[int, ...] = (4, 16, 64)):
    import torch

    from trainables.contract import TrainConfig
    from trainables.data import load_dataset
    from trainables.train import train

    torch.set_num_threads(1)
    data = load_dataset("quadratic", "/unused")
    batches = list(batches)

    def run(b: int, lr: float, w: float, seed: int) -> tuple[float, bool]:
        cfg = TrainConfig(
            batch_size=b,
            lr=lr,
            seed=seed,
            epochs=1,
            dataset="quadratic",
            model="linear",
            diverge_factor=10.0,
        )
        last = [e.metrics for e in train(cfg, data)][-1]
        return float(last.val_loss), bool(last.diverged)

    centre = {b: math.log10(0.0019 * b / 4) for b in batches}  # the sweep's grid, 10x low
    return run, batches, centre, "linear"


QUAD_NOISE_SD = 0.008  # seed sd of the final loss at the optimum (12 real runs, B = 4 and 64)
QUAD_NOISE_LR = 1.1  # log10 growth of that sd per decade of lr (0.0025 at -0.45, 0.025 at +0.45)
QUAD_NOISE_MIN = 0.0025


def quadratic_expected_problem():
    """The quadratic problem without training: its exact expected loss plus seed noise."""
    from trainables.quadratic import best_lr, expected_loss

    batches = [4, 16, 64]
    opt = {b: math.log10(best_lr(b)) for b in batches}
    start = {b: expected_loss(1e-12, b) for b in batches}  # the untrained loss

    def run(b: int, lr: float, w: float, seed: int) -> tuple[float, bool]:
        mean = expected_loss(lr, b)
        if not math.isfinite(mean) or mean > 10.0 * start[b]:  # the sweep's diverge_factor
            return math.nan, True
        sd = max(QUAD_NOISE_MIN, QUAD_NOISE_SD * 10 ** (QUAD_NOISE_LR * (math.log10(lr) - opt[b])))
        return mean + float(np.random.default_rng(seed).normal(0.0, sd)), False

    centre = {b: math.log10(0.0019 * b / 4) for b in batches}  # the sweep's grid, 10x low
    return run, batches, centre, "linear"


def run_grid(run, batches, centre, expected, seed: int) -> tuple[int | None, str]:
    """The smallest fixed log grid (GRID_DENSITIES lrs per batch size over the search range,
    all run, analysed once) whose verdict is decided and right: (its trials, its verdict).
    The densities are nested, so each trial is run once."""
    cache: dict[tuple[int, float], tuple[float, bool]] = {}
    verdict = "inconclusive"
    for n in GRID_DENSITIES:
        trials = []
        for b in batches:
            for i, x in enumerate(np.linspace(-GRID_HALF, GRID_HALF, n)):
                key = (b, round(float(x), 9))
                if key not in cache:
                    cache[key] = run(b, 10 ** (centre[b] + x), 0.0, seed * 100_003 + len(cache))
                y, div = cache[key]
                trials.append(
                    {
                        "trial": f"g{b}_{i}",
                        "batch_size": b,
                        "lr": 10 ** (centre[b] + x),
                        "warmup_epochs": 0.0,
                        "seed": seed * 100_003 + i,
                        "phase": "grid",
                        "status": "diverged" if div else "done",
                        "val_loss": math.nan if div else y,
                    }
                )
        verdict = decide(
            infer(_frame(trials, "val_loss"), replicates=100, seed=seed, warmup=False)
        ).verdict
        if verdict != "inconclusive":
            return n * len(batches), verdict
    return None, verdict


def ratio_interval(
    loop_n: list[int | None], grid_n: list[int | None], level: float = 0.9
) -> tuple[float, float] | None:
    """A percentile interval of the ratio of medians, the seeds resampled in pairs (a seed's
    loop and grid run the same trials function and noise): how much of a difference between
    two ratios, or between a ratio and the goal, the seeds can tell. A run that never decided
    right counts as infinitely many trials, as in the median; None with fewer than MIN_UNITS
    seeds or when the loop's median run never decided right."""
    pairs = np.array(
        [
            [math.inf if n is None else n for n in loop_n],
            [math.inf if g is None else g for g in grid_n],
        ]
    )
    pick = resamples(pairs.shape[1])
    if pick is None or math.isinf(float(np.median(pairs[0]))):
        return None
    med = np.median(pairs[:, pick], axis=2)  # (2, BOOT_REPS)
    with np.errstate(invalid="ignore"):
        r = med[0] / med[1]  # inf / inf (both medians undecided) is nan: no ratio there
    return percentile_interval(r[~np.isnan(r)], level)


def summary(
    loop_n: list[int | None], grid_n: list[int | None], loop_max: int, grid_max: int
) -> str:
    """The ratio of the median trials to a decided, right verdict, over every seed: a run that
    never decided right counts as needing more than it was allowed (the loop's budget, the
    densest grid), which the median can still place; dropping those seeds would favour the
    method that fails more. Also the ratio over the seeds both decided."""
    med_loop = float(np.median([math.inf if n is None else n for n in loop_n]))
    med_grid = float(np.median([math.inf if n is None else n for n in grid_n]))

    def show(v: float, most: int) -> str:
        return f"> {most}" if math.isinf(v) else f"{v:.0f}"

    if math.isinf(med_loop):
        ratio = "no ratio (the loop's median run never decided right)"
    elif math.isinf(med_grid):
        ratio = f"ratio loop / grid < {med_loop / grid_max:.2f}"
    else:
        ratio = f"ratio loop / grid = {med_loop / med_grid:.2f}"
    both = [(n, g) for n, g in zip(loop_n, grid_n, strict=True) if n is not None and g is not None]
    lines = [
        f"median trials to a decided, right verdict over all {len(loop_n)} seeds (an undecided "
        f"run counts as more than it was allowed): loop {show(med_loop, loop_max)}, grid "
        f"{show(med_grid, grid_max)}; {ratio}"
    ]
    spread = ratio_interval(loop_n, grid_n)
    if spread is not None:
        lines.append(
            f"the ratio's 90% interval over the seeds (paired bootstrap, {BOOT_REPS} "
            f"resamples): {spread[0]:.2f} to {spread[1]:.2f}"
        )
    if both:
        ln, gn = (float(np.median(v)) for v in zip(*both, strict=True))
        lines.append(
            f"over the {len(both)} seeds both decided right: loop {ln:.0f}, grid {gn:.0f}; "
            f"ratio {ln / gn:.2f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--problem",
        choices=["planted", "noisy", "quadratic", "quadratic-expected"],
        default="planted",
    )
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("--max-trials", type=int, default=150)
    a = p.parse_args(argv)
    if a.problem == "quadratic":
        run, batches, centre, expected = quadratic_problem()
    elif a.problem == "quadratic-expected":
        run, batches, centre, expected = quadratic_expected_problem()
    else:
        run, batches, centre, expected = planted_problem(
            "linear" if a.problem == "planted" else "noisy"
        )
    print(
        f"# {a.problem}: batch sizes {batches}, right verdict {expected}; python "
        f"{platform.python_version()}, {platform.machine()}"
    )
    loop_n, grid_n = [], []
    for seed in a.seeds:
        t0 = time.perf_counter()
        res = run_loop(run, batches, [0.0], centre, Budget(trials=a.max_trials), seed=seed)
        n_loop = len(res.trials) if res.stopped == "decided" else None
        right = res.decision is not None and res.decision.verdict == expected
        t1 = time.perf_counter()
        n_grid, grid_verdict = run_grid(run, batches, centre, expected, seed)
        t2 = time.perf_counter()
        alpha = res.inference.alpha if res.inference is not None else None
        print(
            f"seed {seed}: loop {n_loop} trials (verdict "
            f"{res.decision.verdict if res.decision else '-'}, right: {right}, alpha "
            f"{alpha if alpha is None else round(alpha, 3)}; {t1 - t0:.0f} s), grid "
            f"{n_grid} trials ({t2 - t1:.0f} s)",
            flush=True,
        )
        loop_n.append(n_loop if right else None)
        grid_n.append(n_grid if grid_verdict == expected else None)
    print(summary(loop_n, grid_n, a.max_trials, GRID_DENSITIES[-1] * len(batches)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
