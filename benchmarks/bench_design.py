"""How many trials until the verdict is decided and right: the design loop against a dense grid.

    python -m benchmarks.bench_design [--problem planted|quadratic] [--seeds 1 2 3]

Both methods run the same trials function with the same seeds, one trial at a time, and are
analysed after every trial exactly as the sweep does (chi-square intervals, confirmed with
calibrated ones before a verdict counts):

- loop: `sweep.design.run_loop` (start from neighbours, bracket, then the c-optimal trial for
  alpha), stopping when the verdict is decided;
- grid: a fixed log grid of GRID_LRS lrs per batch size over the same search range, visited
  coarse-to-fine (every batch size's lrs in a bit-reversed order, batch sizes interleaved), so
  that a prefix of it is itself a spread-out design; the count is the first prefix whose
  verdict is decided and stays right to the end of the grid.

Problems: `planted` (analysis.planted's linear truth: asymmetric basin, divergence cliff,
seed noise), `quadratic` (real training of trainables.quadratic, whose optimum is exact:
linear over B = 4..64). Prints trials per method and seed and the ratio of the medians.
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
from sweep.design import Budget, _frame, run_loop

GRID_LRS = 13
GRID_HALF = 1.5  # decades on each side of the search centre


def planted_problem():
    sc = scenarios()["linear"]
    truth = sc.truth
    batches = [8, 16, 32, 64, 128, 256]
    b_min = min(batches)

    def run(b: int, lr: float, w: float, seed: int) -> tuple[float, bool]:
        rng = np.random.default_rng(seed)
        mean, div = truth.loss(b, np.array([math.log10(lr)]), w, b_min)
        return float(mean[0] + rng.normal(0, truth.noise_sd(b, b_min))), bool(div[0])

    centre = {b: math.log10(0.01 * b / 8) for b in batches}  # the linear rule, 0.3 dec. low
    return run, batches, centre, "linear"


def quadratic_problem():
    import torch

    from trainables.contract import TrainConfig
    from trainables.data import load_dataset
    from trainables.train import train

    torch.set_num_threads(1)
    data = load_dataset("quadratic", "/unused")
    batches = [4, 16, 64]

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


def grid_order(batches: list[int], centre: dict[int, float]) -> list[tuple[int, float]]:
    """Every batch size's GRID_LRS lrs, coarse to fine (the ends, then always the lr farthest
    from those already run), batch sizes interleaved."""
    xs = np.linspace(-GRID_HALF, GRID_HALF, GRID_LRS)
    order = [0, GRID_LRS - 1]
    while len(order) < GRID_LRS:
        rest = [i for i in range(GRID_LRS) if i not in order]
        order.append(max(rest, key=lambda i: min(abs(xs[i] - xs[j]) for j in order)))
    return [(b, centre[b] + xs[i]) for i in order for b in batches]


def run_grid(run, batches, centre, expected, seed: int) -> int | None:
    trials, first_right = [], None
    for k, (b, x) in enumerate(grid_order(batches, centre)):
        w = 0.0
        y, div = run(b, 10**x, w, seed * 100_003 + k)
        trials.append(
            {
                "trial": f"g{k}",
                "batch_size": b,
                "lr": 10**x,
                "warmup_epochs": w,
                "seed": seed * 100_003 + k,
                "phase": "grid",
                "status": "diverged" if div else "done",
                "val_loss": math.nan if div else y,
            }
        )
        if len(trials) < 3 * len(batches):
            continue
        frame = _frame(trials, "val_loss")
        dec = decide(infer(frame, replicates=0, warmup=False))
        if dec.verdict != "inconclusive":
            dec = decide(infer(frame, replicates=100, seed=seed, warmup=False))
        if dec.verdict == expected:
            first_right = first_right or len(trials)
        else:
            first_right = None
    return first_right


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--problem", choices=["planted", "quadratic"], default="planted")
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("--max-trials", type=int, default=150)
    a = p.parse_args(argv)
    run, batches, centre, expected = (
        planted_problem() if a.problem == "planted" else quadratic_problem()
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
        n_grid = run_grid(run, batches, centre, expected, seed)
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
        grid_n.append(n_grid)
    ok_loop = [n for n in loop_n if n is not None]
    ok_grid = [n for n in grid_n if n is not None]
    if ok_loop and ok_grid:
        ratio = float(np.median(ok_loop)) / float(np.median(ok_grid))
        print(
            f"median trials to a decided, right verdict: loop {np.median(ok_loop):.0f}, grid "
            f"{np.median(ok_grid):.0f}; ratio loop / grid = {ratio:.2f}"
        )
    else:
        print(f"loop {loop_n}, grid {grid_n}: no ratio (a method never decided right)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
