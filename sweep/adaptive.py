"""The design loop inside the sweep (`design: adaptive`): plain data and small functions between
the searcher (`sweep.search`, which asks Optuna and hands trials to Ray) and the loop's
decisions (`sweep.design`, which see only the model of the finished trials).

- `AdaptivePlan`: what the loop may do, built from the config.
- `frame`: the finished trials as the table `analysis.inference` reads.
- `trial_seed`: every adaptive trial runs its own seed, recorded on its Optuna trial, so that the
  model sees seed noise as noise (one seed for all trials would make the realised optimum of
  that seed look like the truth).
- `Loop`: the loop's state between trials: the batch sizes it searches (grown by
  `design.extend`), its looks, why it stopped, the answer forming, and the measurement trials
  placed once it stopped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import pandas as pd

from analysis.inference import Inference
from sweep import design
from sweep.decide import Done

SEED_STRIDE = 10_000  # adaptive trial seed: sweep seed + 1 + STRIDE x batch size + its number
MEASURE_OFFSET = SEED_STRIDE - 1  # the seed of a batch size's measurement trial
PIN_OFFSET = SEED_STRIDE // 2  # ... and of its pin trials (+ their number)


@dataclass
class AdaptivePlan:
    batch_sizes: list[int]  # searched from the start
    batch_sizes_max: int | None  # larger ones may be added (design.extend)
    centre: dict[int, float]  # log10 lr a batch size without located neighbours starts at
    start_half: float  # decades each way around `centre`
    budget: design.Budget
    replicates: int  # simulated sweeps calibrating the stopping check
    constant: bool  # an adaptive optimizer: "no lr change" is one of the rules
    measure_noise_scale: bool  # one trial per batch size at its optimum measures it, at the end
    seed: int
    pin_trials: int = 0  # per batch size near its optimum once decided (design.pin)


def trial_seed(seed: int, batch_size: int, number: int) -> int:
    return seed + 1 + SEED_STRIDE * batch_size + number


def frame(done: list[Done], metric: str) -> pd.DataFrame:
    """Finished trials (failed ones left out) in the columns `analysis.inference` reads."""
    rows = [
        {
            "trial": d.trial_id,
            "batch_size": d.batch_size,
            "lr": d.lr,
            "warmup_epochs": d.warmup,
            "seed": d.seed,
            "phase": d.phase,
            "status": "done" if d.feasible else "diverged",
            metric: d.value,
        }
        for d in done
        if not d.failed
    ]
    cols = ["trial", "batch_size", "lr", "warmup_epochs", "seed", "phase", "status", metric]
    return pd.DataFrame(rows, columns=cols)


REACH = 1.0  # decades beyond the lrs tried (finite results) that a proposal may go


def clamp(prop: design.Proposal, done: list[Done]) -> design.Proposal:
    """A proposal kept within REACH decades of the lrs with a finite result: a model fitted to
    a few noisy trials can put an optimum anywhere (seen: lr = 3e23), and a trial there
    teaches nothing."""
    tried = [math.log10(d.lr) for d in done if d.feasible]
    if not tried:
        return prop
    lo, hi = min(tried) - REACH, max(tried) + REACH
    x = None if prop.x is None else min(max(prop.x, lo), hi)
    a, b = min(max(prop.lo, lo), hi), min(max(prop.hi, lo), hi)
    if b - a < 0.1:  # the range fell onto an edge: half a decade inside it
        a, b = (hi - 0.5, hi) if a >= hi else (lo, lo + 0.5)
    if x is not None:
        a, b = min(a, x), max(b, x)
    return replace(prop, lo=a, hi=b, x=x)


@dataclass
class Loop:
    plan: AdaptivePlan
    metric: str
    maximize: bool
    batch_sizes: list[int] = field(default_factory=list)
    looks: design.Looks = field(default_factory=design.Looks)
    last: design.Look | None = None
    stopped: str = ""  # decided | budget | earlier (a resumed sweep that had stopped)
    verified: bool = False  # a decided stop still decided once every trial had finished
    shown: str = ""  # the answer as last printed
    n_seen: int = 0  # finished trials at the last look
    pinned: Inference | None = None  # the quick refit after the last pin trial (design.pin)
    pin_others: int = -1  # finished trials other than pin trials at that refit

    def __post_init__(self) -> None:
        self.batch_sizes = self.batch_sizes or list(self.plan.batch_sizes)

    def see(self, done: list[Done], strict_now: bool = False, extend: bool = True) -> str | None:
        """Refit after a trial finished; return a note when a batch size was added."""
        table = frame(done, self.metric)
        counts = table.groupby("batch_size").size().to_dict()
        self.n_seen = len(done)
        self.last = design.look(
            table,
            counts,
            self.batch_sizes,
            self.looks,
            self.metric,
            self.maximize,
            self.plan.constant,
            self.plan.replicates,
            self.plan.seed,
            strict_now,
        )
        if self.last.decided:
            self.stopped = "decided"
            return None
        if not extend:
            return None
        added = design.extend(self.batch_sizes, self.looks, self.plan.batch_sizes_max)
        if added is None:
            return None
        self.batch_sizes.append(added)
        return (
            f"[design] every batch size is located and the verdict is still undecided: "
            f"added B={added} (adaptive.batch_sizes_max {self.plan.batch_sizes_max})"
        )

    @property
    def unchecked(self) -> bool:
        """Stopped decided (or found stopped by a resume) and not yet looked at again on every
        finished trial (`sweep.search.PhasedSearcher._verify`)."""
        return self.stopped in ("decided", "earlier") and not self.verified

    def answer(self, n_trials: int) -> str | None:
        """The answer forming, when it changed since the last call."""
        if self.last is None:
            return None
        last = self.last
        line = "[design] " + design.status_line(
            last.inference, last.decision, n_trials, last.ready, last.decided
        )
        if line == self.shown:
            return None
        self.shown = line
        return line

    def budget_spent(self, n_adaptive: int, minutes: float) -> bool:
        return design.stop_reason(False, n_adaptive, minutes, self.plan.budget) is not None

    def propose(
        self,
        done: list[Done],
        pending: dict[int, int],
        warmups: list[float],
        running: tuple[tuple[int, float, float], ...] = (),
    ):
        """The next trial's `design.Proposal` (finished and running trials counted; `pending`:
        running or queued trials per batch size; `running`: the adaptive ones' batch size,
        log10 lr and warmup)."""
        table = frame(done, self.metric)
        counts = table.groupby("batch_size").size().to_dict()
        for b, n in pending.items():
            counts[b] = counts.get(b, 0) + n
        inf = self.last.inference if self.last is not None else None
        if inf is None or inf.table.empty:
            b = min(self.batch_sizes, key=lambda v: (counts.get(v, 0), v))
            c, h = self.plan.centre[b], self.plan.start_half
            return design.Proposal(b, c - h, c + h, None, None, "start")
        busy = frozenset(b for b, n in pending.items() if n)
        prop = design.propose(
            inf,
            self.batch_sizes,
            counts,
            warmups,
            self.plan.centre,
            self.plan.start_half,
            busy,
            running,
        )
        return clamp(prop, done)

    def pin_look(self, done: list[Done]) -> None:
        """Refit (quickly) after a pin trial: the next one follows the optimum. Where only pin
        trials finished since the last refit, only the bottom-of-basin fit is redone
        (`analysis.inference.refit_bottoms`)."""
        from analysis.inference import PIN_PHASE, infer, refit_bottoms

        rows = frame(done, self.metric)
        others = int((rows["phase"] != PIN_PHASE).sum())
        if self.pinned is not None and others == self.pin_others:
            self.pinned = refit_bottoms(self.pinned, rows)
        else:
            self.pinned = infer(
                rows,
                self.metric,
                self.maximize,
                replicates=0,
                constant=self.plan.constant,
                warmup=False,
                quick=True,
            )
        self.pin_others = others

    def pin_proposal(self, done: list[Done], pins: dict[int, int], warmup: float):
        """The next pin trial (`design.pin`), or None when every batch size has its own."""
        inf = self.pinned or (self.last.inference if self.last is not None else None)
        if inf is None or not self.plan.pin_trials:
            return None
        return design.pin(inf, self.batch_sizes, pins, self.plan.pin_trials, warmup)

    def measure_point(self, done: list[Done], batch: int) -> tuple[float, float] | None:
        """(lr, warmup) of a batch size's noise-scale measurement: its modelled best lr, at
        the warmup of its best finished trial; None when it has no finished trial."""
        ok = [d for d in done if d.batch_size == batch and d.feasible]
        if not ok:
            return None
        best = (max if self.maximize else min)(ok, key=lambda d: d.value)
        inf = self.pinned or (self.last.inference if self.last is not None else None)
        x = design.pinned_optimum(inf, batch) if inf is not None else None
        lr = 10**x if x is not None and math.isfinite(x) else best.lr
        return lr, best.warmup
