"""The searcher's decisions, as pure functions of what has finished (no Optuna, no Ray).

- `ranked`: a batch size's feasible grid and Optuna trials, best first. The confirmation phase
  re-runs the first `top_k` (`confirm_picks`); widening and bracketing look at the best.
- `penalty`: the value told to Optuna for a diverged trial: worse than every finite value.
- `widening`: a study whose best lr sits within one step (range / budget) of an edge of its
  range gets the range grown on that side by `widen_decades`, and half its budget again.
- `bracket`: a study whose budget is spent while its best lr has no feasible trial on one side
  (typically just below the divergence edge) gets one more trial at the geometric midpoint of
  the gap: the analysis needs the optimum bracketed.
- `max_extra_trials`: how many trials widening and bracketing can add to one study, at most
  (the sweep announces "N planned + up to M more").
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

MAX_BRACKETS = 2  # extra trials per study to bracket a best lr that sits at a feasible edge
MIN_BRACKET_DECADES = 0.02  # a bracketing trial closer than this to the best lr is pointless


@dataclass
class Done:
    """A finished trial, as the searcher remembers it."""

    phase: str
    batch_size: int
    lr: float
    warmup: float
    seed: int
    value: float  # the metric; NaN when diverged or failed
    diverged: bool
    failed: bool = False
    trial_id: str = ""

    @property
    def feasible(self) -> bool:
        return math.isfinite(self.value)


def outcome(
    trial_id: str,
    phase: str,
    config: dict[str, Any],
    result: dict | None,
    metric: str,
    error: bool,
) -> Done:
    """A finished trial's `Done` from its config and Ray's last result (None: it failed)."""
    diverged = bool(result and result.get("diverged"))
    value = float(result[metric]) if result and metric in result else math.nan
    if diverged or not math.isfinite(value):
        value = math.nan
    return Done(
        phase,
        config["batch_size"],
        config["lr"],
        config["warmup_epochs"],
        config["seed"],
        value,
        diverged,
        failed=error or result is None,
        trial_id=trial_id,
    )


@dataclass
class StudyState:
    """One batch size's Optuna study: its lr range, budget and what it has spent."""

    batch_size: int
    log10_lo: float
    log10_hi: float
    budget: int  # Optuna trials to run (grows with each widening and bracket)
    sampler_seed: int
    base_name: str  # <sweep>-<run>-B<batch size>
    asked: int = 0
    widenings: int = 0
    brackets: int = 0  # extra trials placed to bracket the best lr

    @property
    def name(self) -> str:
        """The study in use: each widening starts `<base_name>-w<k>` over the wider range."""
        return self.base_name if self.widenings == 0 else f"{self.base_name}-w{self.widenings}"


def ranked(done: list[Done], batch_size: int, maximize: bool) -> list[Done]:
    """The batch size's feasible grid and Optuna trials, best first."""
    feasible = [
        d for d in done if d.batch_size == batch_size and d.phase != "confirm" and d.feasible
    ]
    return sorted(feasible, key=lambda d: d.value, reverse=maximize)


def penalty(done: list[Done], maximize: bool) -> float:
    """Value told for a diverged trial: worse than every finite value seen."""
    finite = [d.value for d in done if d.feasible]
    if not finite:
        return 0.0 if maximize else 10.0
    spread = max(max(finite) - min(finite), 1e-3)
    return min(finite) - spread if maximize else max(finite) + spread


def confirm_picks(best_first: list[Done], top_k: int) -> list[tuple[float, float]]:
    """The `top_k` best distinct (lr, warmup) pairs."""
    picked: list[tuple[float, float]] = []
    for d in best_first:
        if (d.lr, d.warmup) not in picked:
            picked.append((d.lr, d.warmup))
        if len(picked) == top_k:
            break
    return picked


@dataclass(frozen=True)
class Widening:
    edge: str  # "upper" or "lower": where the best lr sits
    best_lr: float
    log10_range: tuple[float, float]  # the new range
    extra: int  # trials added to the budget


def widening(
    st: StudyState, done: list[Done], max_widenings: int, widen_decades: float, maximize: bool
) -> Widening | None:
    """Grow the study's range when its best lr is within one step of an edge (once it has run
    at least a third of its budget, and at most `max_widenings` times)."""
    n_optuna = sum(1 for d in done if d.phase == "optuna" and d.batch_size == st.batch_size)
    best = ranked(done, st.batch_size, maximize)
    if st.widenings >= max_widenings or not best or n_optuna < max(3, st.budget // 3):
        return None
    step = (st.log10_hi - st.log10_lo) / max(st.budget, 1)
    x = math.log10(best[0].lr)
    up, down = x > st.log10_hi - step, x < st.log10_lo + step
    if not (up or down):
        return None
    lo = st.log10_lo - (widen_decades if down else 0.0)
    hi = st.log10_hi + (widen_decades if up else 0.0)
    return Widening("upper" if up else "lower", 10**x, (lo, hi), max(1, st.budget // 2))


def max_extra_trials(trials_per_study: int, max_widenings: int) -> int:
    """The most trials one study can add to its budget: up to MAX_BRACKETS bracket its best lr
    (`bracket`), and every widening adds half the budget it has then (`widening`); the most
    comes when the brackets come first."""
    if trials_per_study <= 0:
        return 0
    budget = trials_per_study + MAX_BRACKETS
    for _ in range(max_widenings):
        budget += max(1, budget // 2)
    return budget - trials_per_study


@dataclass(frozen=True)
class Bracket:
    lr: float  # the extra trial's lr
    best: Done  # the best trial it brackets (its warmup is reused)


def bracket(st: StudyState, done: list[Done], maximize: bool) -> Bracket | None:
    """One more trial between the best lr and its nearest infeasible neighbour (or the range's
    edge) on the side where no feasible trial lies, once the budget is spent."""
    if st.asked < st.budget or st.brackets >= MAX_BRACKETS:
        return None
    best_first = ranked(done, st.batch_size, maximize)
    if not best_first:
        return None
    best = best_first[0]
    tried = [
        d
        for d in done
        if d.batch_size == st.batch_size and d.phase in ("grid", "optuna") and not d.failed
    ]
    feasible = [d.lr for d in tried if d.feasible]
    infeasible = [d.lr for d in tried if not d.feasible]
    target = None
    if not [lr for lr in feasible if lr > best.lr]:
        above = min([lr for lr in infeasible if lr > best.lr], default=10**st.log10_hi)
        target = math.sqrt(best.lr * above)
    elif not [lr for lr in feasible if lr < best.lr]:
        below = max([lr for lr in infeasible if lr < best.lr], default=10**st.log10_lo)
        target = math.sqrt(best.lr * below)
    if target is None or abs(math.log10(target / best.lr)) < MIN_BRACKET_DECADES:
        return None
    return Bracket(target, best)


def next_study(
    studies: list[StudyState], in_flight: dict[int, int], grid_done: set[int]
) -> StudyState | None:
    """The study to ask next: among those with budget left whose batch size's grid trials have
    all finished (they are told first), the one that has asked least (counting trials in
    flight), then the smallest batch size: studies advance round-robin."""
    ready = [s for s in studies if s.asked < s.budget and s.batch_size in grid_done]
    return min(
        ready, default=None, key=lambda s: (s.asked + in_flight.get(s.batch_size, 0), s.batch_size)
    )
