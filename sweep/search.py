"""One Ray Tune searcher that runs the sweep's three phases in one experiment.

1. grid: the fixed linear-scaling grid (`space.grid_trials`), in batch-size order.
2. optuna: one Optuna study per batch size (batch size is the scientific variable; lr and
   warmup are nuisance parameters), started from that batch size's grid results (told to the
   study as evaluated trials, not re-run), studies served round-robin so they run concurrently.
   When a study's best lr lies within one step (range / trials) of an edge of its range, the
   range is widened (at most `max_widenings` times, each adding half the budget): a new study
   `<name>-w<k>` over the wider range is seeded with every earlier trial and continues. When
   the budget is spent and the best lr has no feasible trial on one side, up to two more trials
   bracket it.
3. confirm: as soon as a batch size's study is done, its `top_k` best (lr, warmup) pairs are
   re-run with `confirm.seeds` new seeds, so the analysis sees seed-to-seed spread.

This module is the phase logic behind Ray's `Searcher` interface; the decisions are pure
functions in `sweep.decide`, the Optuna bookkeeping is `sweep.studies`, and what the sweep
prints comes out through `sweep.progress` (the searcher only records notes). The searcher limits
concurrency itself (`set_max_concurrency`), so the `ConcurrencyLimiter` around it passes calls
through and its state is saved with ours: Ray's limiter does not save the trials it holds,
which breaks `Tuner.restore`.
"""

from __future__ import annotations

import pickle
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from ray.tune.search import Searcher

from sweep import decide, space
from sweep.decide import Done, StudyState
from sweep.studies import Studies


@dataclass
class Plan:
    """Everything the searcher needs, as plain data (picklable, importable)."""

    grid: list[dict[str, Any]]
    base: dict[str, Any]  # keys shared by every trial
    batch_sizes: list[int]
    studies: dict[int, StudyState]
    warmup_choices: list[float]
    sampler: str
    optuna_seed: int  # trial seed of Optuna trials (same init as grid seed 0)
    confirm_top_k: int
    confirm_seeds: list[int]
    max_widenings: int
    widen_decades: float
    journal_path: str
    metric: str
    mode: str


@dataclass
class Live:
    """A suggested trial that has not finished yet."""

    phase: str
    config: dict[str, Any]
    study: str = ""  # the study an Optuna trial was asked from, and its number there
    number: int = -1


@dataclass
class State:
    grid_next: int = 0
    live: dict[str, Live] = field(default_factory=dict)
    done: list[Done] = field(default_factory=list)
    confirm_queue: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    confirmed: list[int] = field(default_factory=list)  # batch sizes whose confirmation is queued
    finished: bool = False  # nothing left to suggest (running trials may still be going)


class PhasedSearcher(Searcher):
    def __init__(self, plan: Plan, max_concurrent: int = 1) -> None:
        super().__init__(metric=plan.metric, mode=plan.mode)
        self.plan = plan
        self.state = State()
        self.max_concurrent = max_concurrent
        self.run_id = uuid.uuid4().hex[:8]
        self.started = time.time()
        self._studies: Studies | None = None  # reopened from the journal, never pickled
        self._new_notes: list[str] = []  # notes not yet printed (sweep.progress takes them)

    @property
    def maximize(self) -> bool:
        return self.plan.mode == "max"

    @property
    def studies(self) -> Studies:
        if self._studies is None:
            p = self.plan
            self._studies = Studies(p.journal_path, p.sampler, self.maximize, p.warmup_choices)
        return self._studies

    # ------------------------------------------------------------------ Ray's interface
    def set_max_concurrency(self, max_concurrent: int) -> bool:
        self.max_concurrent = max_concurrent
        return True

    def set_search_properties(
        self, metric: str | None, mode: str | None, config: dict, **spec: Any
    ) -> bool:
        return True

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        if len(self.state.live) >= self.max_concurrent:
            return None
        nxt = self._next_grid() or self._next_optuna() or self._next_confirm()
        if nxt is None:
            if self._nothing_left():
                self.state.finished = True
                return Searcher.FINISHED
            return None
        self.state.live[trial_id] = nxt
        return nxt.config

    def on_trial_complete(
        self, trial_id: str, result: dict | None = None, error: bool = False
    ) -> None:
        live = self.state.live.pop(trial_id, None)
        if live is None:
            return
        done = decide.outcome(trial_id, live.phase, live.config, result, self.plan.metric, error)
        self.state.done.append(done)
        st = self.plan.studies.get(done.batch_size)
        if live.phase == "grid" and st is not None and not done.failed:
            self.studies.add(st, done, self._told_value(done))
        elif live.phase == "optuna" and st is not None:
            self._tell_optuna(live, done, st)
            self._maybe_widen(st) or self._maybe_bracket(st)

    def get_state(self) -> dict[str, Any]:
        return {
            "plan": self.plan,
            "state": self.state,
            "run_id": self.run_id,
            "started": self.started,
            "max_concurrent": self.max_concurrent,
        }

    def set_state(self, state: dict[str, Any]) -> None:
        self.plan, self.state = state["plan"], state["state"]
        self.run_id, self.started = state["run_id"], state["started"]
        self.max_concurrent = state["max_concurrent"]
        self._studies, self._new_notes = None, []

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.get_state(), f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:  # our own file, written by `save`
            self.set_state(pickle.load(f))  # noqa: S301

    def __getstate__(self) -> dict[str, Any]:
        d = self.__dict__.copy()
        d["_studies"], d["_new_notes"] = None, []
        return d

    # ------------------------------------------------------------------ for sweep.progress
    def totals(self) -> dict[str, int]:
        p = self.plan
        n_confirm = len(p.batch_sizes) * p.confirm_top_k * len(p.confirm_seeds)
        return {
            "grid": len(p.grid),
            "optuna": sum(s.budget for s in p.studies.values()),
            "confirm": n_confirm,
        }

    def finished_counts(self) -> dict[str, int]:
        counts = {"grid": 0, "optuna": 0, "confirm": 0}
        for d in self.state.done:
            counts[d.phase] += 1
        return counts

    def done_of(self, trial_id: str) -> Done | None:
        return next((d for d in reversed(self.state.done) if d.trial_id == trial_id), None)

    def take_notes(self) -> list[str]:
        """The notes (a widened range, a bracketing trial) recorded since the last call."""
        notes, self._new_notes = self._new_notes, []
        return notes

    # ------------------------------------------------------------------ phases
    def _next_grid(self) -> Live | None:
        if self.state.grid_next >= len(self.plan.grid):
            return None
        config = dict(self.plan.grid[self.state.grid_next])
        self.state.grid_next += 1
        return Live("grid", config)

    def _grid_finished(self, batch_size: int) -> bool:
        if any(c["batch_size"] == batch_size for c in self.plan.grid[self.state.grid_next :]):
            return False
        return not any(
            lv.phase == "grid" and lv.config["batch_size"] == batch_size
            for lv in self.state.live.values()
        )

    def _in_flight(self, batch_size: int, phase: str) -> int:
        return sum(
            1
            for lv in self.state.live.values()
            if lv.phase == phase and lv.config["batch_size"] == batch_size
        )

    def _next_optuna(self) -> Live | None:
        sizes = self.plan.batch_sizes
        st = decide.next_study(
            list(self.plan.studies.values()),
            {b: self._in_flight(b, "optuna") for b in sizes},
            {b for b in sizes if self._grid_finished(b)},
        )
        if st is None:
            return None
        number, lr, warmup = self.studies.ask(st)
        st.asked += 1
        config = space.trial(
            self.plan.base, st.batch_size, lr, warmup, self.plan.optuna_seed, "optuna"
        )
        return Live("optuna", config, study=st.name, number=number)

    def _study_finished(self, st: StudyState) -> bool:
        return (
            st.asked >= st.budget
            and self._in_flight(st.batch_size, "optuna") == 0
            and self._grid_finished(st.batch_size)
        )

    def _confirming(self) -> bool:
        return bool(self.plan.confirm_top_k and self.plan.confirm_seeds)

    def _next_confirm(self) -> Live | None:
        for b in self.plan.batch_sizes if self._confirming() else ():
            st = self.plan.studies.get(b)
            finished = self._study_finished(st) if st else self._grid_finished(b)
            if finished and b not in self.state.confirmed:
                best_first = decide.ranked(self.state.done, b, self.maximize)
                self.state.confirm_queue.extend(
                    space.trial(self.plan.base, b, lr, w, seed, "confirm")
                    for lr, w in decide.confirm_picks(best_first, self.plan.confirm_top_k)
                    for seed in self.plan.confirm_seeds
                )
                self.state.confirmed.append(b)
        if not self.state.confirm_queue:
            return None
        return Live("confirm", self.state.confirm_queue.pop(0))

    def _nothing_left(self) -> bool:
        if self.state.grid_next < len(self.plan.grid) or self.state.confirm_queue:
            return False
        if any(s.asked < s.budget for s in self.plan.studies.values()):
            return False
        return not self._confirming() or set(self.plan.batch_sizes) <= set(self.state.confirmed)

    # ------------------------------------------------------------------ telling Optuna
    def _told_value(self, done: Done) -> float:
        """The trial's metric, or for a diverged one a value worse than any seen."""
        return done.value if done.feasible else decide.penalty(self.state.done, self.maximize)

    def _tell_optuna(self, live: Live, done: Done, st: StudyState) -> None:
        if done.failed:
            self.studies.tell_asked(live.study, st, live.number, None)
            return
        value = self._told_value(done)
        self.studies.tell_asked(live.study, st, live.number, value)
        if live.study != st.name:  # widened meanwhile: carry the result into the new study
            self.studies.add(st, done, value)

    def _maybe_widen(self, st: StudyState) -> bool:
        p = self.plan
        w = decide.widening(st, self.state.done, p.max_widenings, p.widen_decades, self.maximize)
        if w is None:
            return False
        old = (st.log10_lo, st.log10_hi)
        st.log10_lo, st.log10_hi = w.log10_range
        st.widenings += 1
        st.budget += w.extra
        for d in self.state.done:  # the new study starts from everything run so far
            if d.batch_size == st.batch_size and d.phase in ("grid", "optuna") and not d.failed:
                self.studies.add(st, d, self._told_value(d))
        self._note(
            f"[optuna] B={st.batch_size}: best lr {w.best_lr:.3g} is at the {w.edge} "
            f"edge of [{10 ** old[0]:.3g}, {10 ** old[1]:.3g}]; widened to "
            f"[{10**st.log10_lo:.3g}, {10**st.log10_hi:.3g}] and added {w.extra} "
            f"trials (widening {st.widenings}/{p.max_widenings})"
        )
        return True

    def _maybe_bracket(self, st: StudyState) -> None:
        b = decide.bracket(st, self.state.done, self.maximize)
        if b is None:
            return
        st.brackets += 1
        st.budget += 1
        self.studies.enqueue(st, b.lr, b.best.warmup)
        self._note(
            f"[optuna] B={st.batch_size}: best lr {b.best.lr:.3g} has no feasible trial "
            f"on one side; added a trial at {b.lr:.3g} to bracket it"
        )

    def _note(self, message: str) -> None:
        self.state.notes.append(message)
        self._new_notes.append(message)
