"""Planted sweeps: trials whose true optimum is known, under the designs a sweep really runs.

`simulate(scenario, seed)` returns a trials table (the columns `analysis.load` produces) drawn
from a planted truth (`Truth`) with one of these designs (`Design`):

- `grid`: fixed log-spaced lrs around a search centre (seeds and warmups crossed);
- `optuna`: what `python -m sweep` does: the linear-scaling grid at warmup 0 and 1 told first,
  then per batch size quasi-random lrs over the search range, then lrs drawn around the best
  *noisy* value seen so far with a shrinking spread (TPE's late clustering), one seed each,
  then the best configurations re-run with new seeds (confirmation); a few trials are
  killed before their last epoch (partial, left out by the analysis).

The truth is deliberately not the analysis model: the loss saturates at the untrained value
far below the optimum, rises with a cubic skew above it, can hit a divergence cliff (the run
blows up although the loss just below is low) that closes in with the batch size, warmup
shifts the optimum and the floor and raises the cliff, seed noise grows with B (and, in the
`lr_noise` scenario, with the lr, as SGD's own noise does).

`benchmarks/bench_verdict.py` runs many replicates per scenario and prints coverage and the
shares of right and wrong verdicts; the tests run a few.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from analysis.synthetic import Law

UNTRAINED = 2.3  # loss of an untrained 10-class model: where the far-left basin saturates


@dataclass(frozen=True)
class Truth:
    law: Law
    floor: float = 0.15  # best final loss
    floor_slope: float = 0.01  # floor change per doubling of B
    curv_left: float = 0.25  # loss per squared decade below the optimum
    curv_right: float = 0.5  # ...above it (steeper towards divergence)
    skew: float = 0.5  # cubic term above the optimum
    noise: float = 0.01  # seed-noise sd at the smallest batch size
    noise_slope: float = 0.1  # log2 growth of the noise sd per doubling of B
    noise_lr: float = 0.0  # log10 growth of the noise sd per decade of lr (from the optimum):
    # SGD's own noise scales with lr / B, and after few epochs it dominates the seed noise
    cliff0: float = 1.0  # decades from the optimum to the divergence cliff at the smallest B
    cliff_slope: float = 0.1  # the cliff closes in by this many decades per doubling of B
    cliff_min: float = 0.25
    warmup_mu: float = 0.05  # decades warmup moves the optimum
    warmup_floor: float = -0.003  # warmup's change of the floor
    warmup_cliff: float = 0.2  # decades warmup raises the cliff

    def optimum(self, b: float, warmup: float = 0.0) -> float:
        """log10 of the best lr at batch size b."""
        return math.log10(self.law.lr_star(b)) + (self.warmup_mu if warmup > 0 else 0.0)

    def loss(
        self, b: float, x: np.ndarray, warmup: float, b_min: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """(mean final loss, diverged) at log10 lrs x."""
        d = x - self.optimum(b, warmup)
        dbl = math.log2(b / b_min)
        floor = self.floor + self.floor_slope * dbl + (self.warmup_floor if warmup > 0 else 0)
        h = UNTRAINED - floor
        left = h * (1 - np.exp(-self.curv_left * d * d / h))
        right = self.curv_right * d * d * (1 + self.skew * d)
        cliff = max(self.cliff_min, self.cliff0 - self.cliff_slope * dbl)
        cliff += self.warmup_cliff if warmup > 0 else 0.0
        return floor + np.where(d < 0, left, right), d > cliff

    def noise_sd(self, b: float, b_min: float, d: float = 0.0) -> float:
        """Seed-noise sd at batch size b, d decades of lr from its optimum."""
        return (
            self.noise * 2 ** (self.noise_slope * math.log2(b / b_min)) * 10 ** (self.noise_lr * d)
        )


@dataclass(frozen=True)
class Design:
    kind: str = "optuna"  # optuna | grid
    batch_sizes: tuple[int, ...] = (8, 16, 32, 64, 128, 256)
    warmups: tuple[float, ...] = (0.0, 1.0)
    # optuna
    grid_lr0: float = 0.001  # the linear-scaling grid's lr at the smallest batch size
    centre_lr0: float = 0.01  # the search centre (linear rule) at the smallest batch size
    centre_alpha: float = 1.0
    range_decades: float = 2.0
    startup: int = 4
    trials: int = 12  # per batch size, after the grid
    spread: tuple[float, float] = (0.5, 0.08)  # decades, first and last TPE-like draw
    confirm_top: int = 2
    confirm_seeds: int = 2
    partial: float = 0.03  # share of trials killed before the end (not finished)
    # grid
    offsets: tuple[float, ...] = tuple(np.round(np.linspace(-1.5, 1.5, 13), 6))
    seeds: int = 1


@dataclass(frozen=True)
class Scenario:
    truth: Truth
    design: Design
    expect: str  # the right verdict: linear | sqrt | neither
    alpha: float | None = None  # planted alpha (None: not a power law)
    note: str = ""
    tags: tuple[str, ...] = field(default_factory=tuple)


def _trial(
    rows: list,
    truth: Truth,
    b: int,
    x: float,
    w: float,
    seed: int,
    phase: str,
    b_min: int,
    rng: np.random.Generator,
    partial: float,
) -> float:
    mean, div = truth.loss(b, np.array([x]), w, b_min)
    y = float(mean[0] + rng.normal(0, truth.noise_sd(b, b_min, x - truth.optimum(b, w))))
    status = "diverged" if div[0] else ("partial" if rng.random() < partial else "done")
    rows.append(
        {
            "trial": f"t{len(rows):05d}",
            "batch_size": b,
            "lr": 10**x,
            "warmup_epochs": w,
            "seed": seed,
            "phase": phase,
            "status": status,
            "epochs": 5,
            "optimizer": "sgd",
            "val_loss": math.nan if div[0] else y,
        }
    )
    return math.inf if div[0] else y


def simulate(sc: Scenario, seed: int) -> pd.DataFrame:
    """One planted sweep as a trials table (see the module docstring)."""
    rng = np.random.default_rng(seed)
    t, d = sc.truth, sc.design
    rows: list[dict] = []
    b_min = min(d.batch_sizes)
    if d.kind == "grid":
        for b in d.batch_sizes:
            centre = math.log10(d.centre_lr0) + d.centre_alpha * math.log10(b / b_min)
            for off in d.offsets:
                for w in d.warmups:
                    for s in range(d.seeds):
                        _trial(rows, t, b, centre + off, w, s, "grid", b_min, rng, 0.0)
        return pd.DataFrame(rows)
    for b in d.batch_sizes:  # the linear-scaling grid, told to every study first
        for w in d.warmups:
            _trial(rows, t, b, math.log10(d.grid_lr0 * b / b_min), w, 0, "grid", b_min, rng, 0.0)
    for b in d.batch_sizes:
        centre = math.log10(d.centre_lr0) + d.centre_alpha * math.log10(b / b_min)
        lo, hi = centre - d.range_decades, centre + d.range_decades
        seen = [
            (math.log10(r["lr"]), r["val_loss"] if r["status"] != "diverged" else math.inf)
            for r in rows
            if r["batch_size"] == b
        ]
        for k in range(d.trials):
            w = float(rng.choice(d.warmups))
            if k < d.startup:
                x = lo + (hi - lo) * (k + rng.random()) / d.startup
            else:
                frac = (k - d.startup) / max(d.trials - d.startup - 1, 1)
                sd = d.spread[0] * (d.spread[1] / d.spread[0]) ** frac
                best = min(seen, key=lambda v: v[1])[0]
                x = float(np.clip(best + rng.normal(0, sd), lo, hi))
            y = _trial(rows, t, b, x, w, 0, "optuna", b_min, rng, d.partial)
            seen.append((x, y))
        ranked = sorted(
            (r for r in rows if r["batch_size"] == b and r["status"] == "done"),
            key=lambda r: r["val_loss"],
        )[: d.confirm_top]
        for r in ranked:
            for s in range(1, d.confirm_seeds + 1):
                _trial(
                    rows,
                    t,
                    b,
                    math.log10(r["lr"]),
                    r["warmup_epochs"],
                    s,
                    "confirm",
                    b_min,
                    rng,
                    d.partial,
                )
    return pd.DataFrame(rows)


def right_verdict(alpha: float, margin: float) -> str:
    if abs(alpha - 1.0) <= margin:
        return "linear"
    if abs(alpha - 0.5) <= margin:
        return "sqrt"
    return "neither"


WIDE = (8, 16, 32, 64, 128, 256, 512, 1024)


def scenarios() -> dict[str, Scenario]:
    """The benchmark's cases (names are stable: tests refer to them)."""
    lin = Truth(Law("linear", lr0=0.02))
    sq = Truth(Law("sqrt", lr0=0.02))
    opt = Design()
    return {
        "linear": Scenario(lin, opt, "linear", 1.0, "planted linear rule, Optuna-like design"),
        "sqrt": Scenario(
            sq,
            replace(opt, centre_alpha=0.5),
            "sqrt",
            0.5,
            "planted sqrt rule, search centred on the sqrt rule",
        ),
        "sqrt_linear_centre": Scenario(
            sq, opt, "sqrt", 0.5, "planted sqrt rule, search centred on the linear rule"
        ),
        "alpha_075": Scenario(
            Truth(Law("power", lr0=0.02, alpha=0.75)),
            opt,
            "neither",
            0.75,
            "intermediate alpha: never linear or sqrt",
        ),
        "constant": Scenario(
            Truth(Law("power", lr0=0.002, alpha=0.0)),
            replace(opt, centre_lr0=0.002, centre_alpha=0.0, grid_lr0=0.0005),
            "neither",
            0.0,
            "Adam-like: the best lr does not change",
        ),
        "saturating": Scenario(
            Truth(Law("saturating", lr_max=1.0, b_noise=64.0)),
            replace(opt, batch_sizes=WIDE, centre_lr0=0.015, centre_alpha=0.6),
            "neither",
            None,
            "linear then flat, knee B_noise = 64 inside",
        ),
        "cliff": Scenario(
            replace(lin, cliff0=0.6, cliff_slope=0.1, cliff_min=0.1),
            opt,
            "linear",
            1.0,
            "a divergence cliff that closes in to 0.1 decade",
        ),
        "noisy": Scenario(
            replace(lin, noise=0.03),
            opt,
            "linear",
            1.0,
            "seed noise 3x: the rules should often stay undecided",
        ),
        "lr_noise": Scenario(
            replace(lin, noise_lr=1.0),
            opt,
            "linear",
            1.0,
            "seed noise 10x per decade of lr (SGD noise, as on the quadratic problem)",
        ),
        "narrow": Scenario(
            sq,
            replace(opt, batch_sizes=(8, 12, 16, 24), centre_alpha=0.75),
            "sqrt",
            0.5,
            "4 batch sizes over 3x: underpowered",
        ),
        "grid13": Scenario(
            Truth(
                Law("linear", lr0=0.02),
                curv_left=0.15,
                curv_right=0.15,
                skew=0.0,
                noise=0.01,
                noise_slope=0.0,
                cliff0=5.0,
                warmup_mu=0.0,
                warmup_floor=0.0,
            ),
            Design(
                kind="grid",
                warmups=(0.0,),
                centre_lr0=0.02,
                offsets=tuple(np.round(np.linspace(-1.5, 1.5, 13), 6)),
            ),
            "linear",
            1.0,
            "clean planted linear law, 13 lrs over 3 decades",
        ),
    }
