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

With `design: adaptive` the design loop (`sweep.adaptive`, `sweep.design`) replaces 2 and 3:
after the grid, every trial is placed by the model of the finished ones until the verdict is
decided or the budget spent; once decided, `adaptive.pin_trials` pin trials per batch size near
its optimum, each placed after a refit of those before it (for the per-batch table; the verdict
does not use them); then one noise-scale trial per batch size; a decided stop is then
looked at again on every finished trial (`_verify`), and the loop goes on when it no longer
holds. A sweep resumed after its noise-scale trials had started verifies its stop the same way
(the stop may have been the budget's: then the loop's budget, which starts again with the run,
decides whether it goes on).

This module is the phase logic behind Ray's `Searcher` interface; the decisions are pure
functions in `sweep.decide`, the Optuna bookkeeping is `sweep.studies`, and what the sweep
prints comes out through `sweep.progress` (the searcher only records notes). The searcher limits
concurrency itself (`set_max_concurrency`), so the `ConcurrencyLimiter` around it passes calls
through.

The searcher's state is never saved on its own: everything it knows is a function of what the
experiment folder holds. A phase's progress is derived from which configurations exist (done,
running or queued to run again), the Optuna phase's from the journal (studies, their ranges and
budgets, which Ray trial each Optuna trial stands for), the confirmation's from the best finished
trials. So a resumed run rebuilds it (`PhasedSearcher(plan, slots, history)`) from the records
of `sweep.resume` and the journal, whenever the previous run was killed; a new phase only has
to derive its own progress the same way. `SweepSearch` keeps Ray from pickling it.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from optuna.trial import TrialState
from ray.tune.search import Searcher, SearchGenerator

from sweep import adaptive, decide, design, resume, space, stopping
from sweep.adaptive import AdaptivePlan, Loop
from sweep.decide import Done, StudyState
from sweep.resume import CONTINUE, DONE, RERUN, History, TrialRecord, config_key
from sweep.studies import LR, WARMUP, Studies, asked_trials

NOT_LOOKED = ("pin", "confirm")  # phases after the loop stopped: no look (pin: `pin_look`)


@dataclass
class Plan:
    """Everything the searcher needs, as plain data, built from the config at every start."""

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
    exp_dir: str = ""  # where trial folders live (a lost one is moved aside from here)
    adaptive: AdaptivePlan | None = None  # design: adaptive (the optuna phase is the loop)


@dataclass
class Live:
    """A trial handed to Ray that has not finished yet (or a configuration queued to run)."""

    phase: str
    config: dict[str, Any]
    study: str = ""  # the study an Optuna trial was asked from, and its number there
    number: int = -1  # -1: asked from no study (its result is added to the current one)
    folder: str = ""  # the trial folder of a trial continued from an earlier run


@dataclass
class State:
    live: dict[str, Live] = field(default_factory=dict)
    done: list[Done] = field(default_factory=list)
    requeue: list[Live] = field(default_factory=list)  # to run (again) before anything new
    notes: list[str] = field(default_factory=list)
    finished: bool = False  # nothing left to suggest (running trials may still be going)


class PhasedSearcher(Searcher):
    def __init__(self, plan: Plan, max_concurrent: int = 1, history: History | None = None):
        super().__init__(metric=plan.metric, mode=plan.mode)
        self.plan = plan
        self.state = State()
        self.max_concurrent = max_concurrent
        self.started = time.time()
        self._studies: Studies | None = None  # reopened from the journal, never pickled
        self._new_notes: list[str] = []  # notes not yet printed (sweep.progress takes them)
        self._accounted: set[tuple] = set()  # configurations done, running or queued
        self._confirm: dict[int, list[dict[str, Any]]] = {}  # per batch size, once decided
        self._folders: dict[str, tuple[str, str]] = {}  # trial id -> (Ray's staging, final)
        self._loop = Loop(plan.adaptive, plan.metric, self.maximize) if plan.adaptive else None
        self._measure: dict[int, dict[str, Any] | None] = {}  # per batch size, once stopped
        self._pinning = False  # decided, and adaptive.pin_trials asks for pin trials
        if history is not None:
            self._rebuild(history.records)

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
        with stopping.no_space_is_fatal():  # the journal is written here
            return self._suggest(trial_id)

    def _suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        if len(self.state.live) >= self.max_concurrent:
            return None
        if self._verify_due():  # e.g. a resumed sweep whose last trials had all finished
            self._verify()
        if self._loop is not None:
            nxt = (
                self._next_requeued(trial_id)
                or self._next_grid()
                or self._next_adaptive(trial_id)
                or self._next_pin()
                or self._next_measure()
            )
        else:
            nxt = (
                self._next_requeued(trial_id)
                or self._next_grid()
                or self._next_optuna(trial_id)
                or self._next_confirm()
            )
        if nxt is None:
            if self._nothing_left():
                self.state.finished = True
                return Searcher.FINISHED
            return None
        self.state.live[trial_id] = nxt
        self._accounted.add(config_key(nxt.config))
        return nxt.config

    def on_trial_complete(
        self, trial_id: str, result: dict | None = None, error: bool = False
    ) -> None:
        with stopping.no_space_is_fatal():  # the trial's files and the journal are written
            self._complete(trial_id, result, error)

    def _complete(self, trial_id: str, result: dict | None, error: bool) -> None:
        live = self.state.live.pop(trial_id, None)
        if live is None:
            return
        folders = self._folders.pop(trial_id, ("", ""))
        if not error:
            resume.flush_trial(*folders)  # its files and record first, then Optuna is told
        done = decide.outcome(trial_id, live.phase, live.config, result, self.plan.metric, error)
        self.state.done.append(done)
        st = self.plan.studies.get(done.batch_size)
        if live.phase == "grid" and st is not None and not done.failed:
            self.studies.add(st, done, self._told_value(done))
        elif live.phase == "optuna" and st is not None:
            self._tell_optuna(live, done, st)
            if self._loop is None:
                self._maybe_widen(st) or self._maybe_bracket(st)
        if live.phase == "pin":
            self._loop.pin_look(self.state.done)
        if self._loop is not None and not self._loop.stopped and live.phase not in NOT_LOOKED:
            self._look()
        elif self._verify_due():
            self._verify()

    def save_to_dir(self, checkpoint_dir: str, session_str: str = "default") -> None:
        """Nothing to save: the state is rebuilt from the experiment folder (module doc)."""

    def restore_from_dir(self, checkpoint_dir: str) -> None:
        """Nothing to load: see `PhasedSearcher(plan, slots, history)`."""

    def __getstate__(self) -> dict[str, Any]:
        d = self.__dict__.copy()
        d["_studies"], d["_new_notes"] = None, []
        return d

    # ------------------------------------------------------------------ for sweep.progress
    def totals(self) -> dict[str, int]:
        p = self.plan
        if self._loop is not None:
            a = p.adaptive
            return {
                "grid": len(p.grid),
                "optuna": a.budget.trials or 0,
                "pin": max(  # (more where an optimum moved away from its pins: design.pin)
                    len(self._loop.batch_sizes) * a.pin_trials, sum(self._pins().values())
                ),
                "confirm": len(self._loop.batch_sizes) if a.measure_noise_scale else 0,
            }
        n_confirm = len(p.batch_sizes) * p.confirm_top_k * len(p.confirm_seeds)
        return {
            "grid": len(p.grid),
            "optuna": sum(s.budget for s in p.studies.values()),
            "confirm": n_confirm,
        }

    def finished_counts(self) -> dict[str, int]:
        counts = {"grid": 0, "optuna": 0, "pin": 0, "confirm": 0}
        for d in self.state.done:
            counts[d.phase] = counts.get(d.phase, 0) + 1
        return counts

    def done_of(self, trial_id: str) -> Done | None:
        return next((d for d in reversed(self.state.done) if d.trial_id == trial_id), None)

    def answer(self) -> str | None:
        """The design loop's answer forming, when it changed since the last call."""
        return self._loop.answer(self._n_adaptive()) if self._loop is not None else None

    def take_notes(self) -> list[str]:
        """The notes (a widened range, a bracketing trial) recorded since the last call."""
        notes, self._new_notes = self._new_notes, []
        return notes

    def trial_started(self, trial_id: str, staging: str, folder: str) -> None:
        """Where Ray writes a trial's files (staging) and where they end up."""
        self._folders[trial_id] = (staging, folder)

    def adopt_ray_trials(self, ray_trial_ids: set[str]) -> None:
        """At the first step of a run: a trial expected to continue that Ray does not have
        (its state could not be restored after all) runs again from the start."""
        for trial_id in [t for t in self.state.live if t not in ray_trial_ids]:
            live = self.state.live.pop(trial_id)
            moved = resume.retire(Path(self.plan.exp_dir), live.folder)
            self.state.requeue.append(Live(live.phase, live.config, live.study, live.number))
            if moved:
                self._note(f"[sweep] Ray could not continue {live.folder}: it runs again")

    # ------------------------------------------------------------------ phases
    def _next_requeued(self, trial_id: str) -> Live | None:
        if not self.state.requeue:
            return None
        nxt = self.state.requeue.pop(0)
        if nxt.number >= 0:  # the Optuna trial it was asked as now stands for this Ray trial
            self.studies.relink(nxt.study, nxt.number, trial_id)
        return nxt

    def _next_grid(self) -> Live | None:
        for config in self.plan.grid:
            if config_key(config) not in self._accounted:
                return Live("grid", dict(config))
        return None

    def _unfinished(self) -> list[Live]:
        """Trials running, or queued to run again."""
        return [*self.state.live.values(), *self.state.requeue]

    def _pending(self, batch_size: int, phase: str) -> int:
        """Trials of the phase and batch size running, or queued to run again."""
        return sum(
            1
            for lv in self._unfinished()
            if lv.phase == phase and lv.config["batch_size"] == batch_size
        )

    def _grid_finished(self, batch_size: int) -> bool:
        if any(
            c["batch_size"] == batch_size and config_key(c) not in self._accounted
            for c in self.plan.grid
        ):
            return False
        return self._pending(batch_size, "grid") == 0

    def _next_optuna(self, trial_id: str) -> Live | None:
        sizes = self.plan.batch_sizes
        st = decide.next_study(
            list(self.plan.studies.values()),
            {b: self._pending(b, "optuna") for b in sizes},
            {b for b in sizes if self._grid_finished(b)},
        )
        if st is None:
            return None
        number, lr, warmup = self.studies.ask(st, trial_id)
        st.asked += 1
        config = space.trial(
            self.plan.base, st.batch_size, lr, warmup, self.plan.optuna_seed, "optuna"
        )
        return Live("optuna", config, study=st.name, number=number)

    def _study_finished(self, st: StudyState) -> bool:
        return (
            st.asked >= st.budget
            and self._pending(st.batch_size, "optuna") == 0
            and self._grid_finished(st.batch_size)
        )

    def _confirming(self) -> bool:
        return bool(self.plan.confirm_top_k and self.plan.confirm_seeds)

    def _searched(self, batch_size: int) -> bool:
        st = self.plan.studies.get(batch_size)
        return self._study_finished(st) if st else self._grid_finished(batch_size)

    def _confirm_configs(self, batch_size: int) -> list[dict[str, Any]]:
        """The batch size's confirmation trials, decided once its search has finished."""
        if batch_size not in self._confirm:
            best_first = decide.ranked(self.state.done, batch_size, self.maximize)
            self._confirm[batch_size] = [
                space.trial(self.plan.base, batch_size, lr, w, seed, "confirm")
                for lr, w in decide.confirm_picks(best_first, self.plan.confirm_top_k)
                for seed in self.plan.confirm_seeds
            ]
        return self._confirm[batch_size]

    def _next_confirm(self) -> Live | None:
        for b in self.plan.batch_sizes if self._confirming() else ():
            if not self._searched(b):
                continue
            for config in self._confirm_configs(b):
                if config_key(config) not in self._accounted:
                    return Live("confirm", config)
        return None

    def _nothing_left(self) -> bool:
        if self.state.requeue or any(config_key(c) not in self._accounted for c in self.plan.grid):
            return False
        if self._loop is not None:
            loop = self._loop
            return (
                bool(loop.stopped)
                and not loop.unchecked
                and self._all_pinned()
                and self._all_measured()
            )
        if any(s.asked < s.budget for s in self.plan.studies.values()):
            return False
        if not self._confirming():
            return True
        return all(
            self._searched(b)
            and all(config_key(c) in self._accounted for c in self._confirm_configs(b))
            for b in self.plan.batch_sizes
        )

    # ------------------------------------------------------------------ design: adaptive
    def _n_adaptive(self) -> int:
        """Adaptive trials finished, running or queued (what the trial budget counts)."""
        live = self._unfinished()
        return sum(1 for d in self.state.done if d.phase == "optuna") + sum(
            1 for lv in live if lv.phase == "optuna"
        )

    def _pending_any(self, batch_size: int) -> int:
        return sum(self._pending(batch_size, p) for p in ("grid", "optuna", "pin", "confirm"))

    def _next_adaptive(self, trial_id: str) -> Live | None:
        loop, a = self._loop, self.plan.adaptive
        if loop.stopped:
            return None
        if loop.budget_spent(self._n_adaptive(), (time.time() - self.started) / 60):
            self._stop("budget")
            return None
        pending = {b: self._pending_any(b) for b in loop.batch_sizes}
        running = tuple(
            (
                int(lv.config["batch_size"]),
                math.log10(float(lv.config["lr"])),
                float(lv.config.get("warmup_epochs", 0.0)),
            )
            for lv in self._unfinished()
            if lv.phase == "optuna"
        )
        prop = loop.propose(self.state.done, pending, self.plan.warmup_choices, running)
        st = self.plan.studies[prop.batch_size]
        fixed = {}
        lo, hi = prop.lo, prop.hi
        if prop.x is not None:
            fixed[LR] = 10**prop.x
            lo, hi = min(lo, prop.x), max(hi, prop.x)
        if prop.warmup is not None:
            fixed[WARMUP] = prop.warmup
        seed_base = adaptive.trial_seed(a.seed, prop.batch_size, 0)
        number, lr, warmup = self.studies.ask(
            st, trial_id, (lo, hi), fixed or None, {"design": prop.reason}, seed_base
        )
        st.asked += 1
        config = space.trial(
            self.plan.base, prop.batch_size, lr, warmup, seed_base + number, "optuna"
        )
        return Live("optuna", config, study=st.name, number=number)

    def _look(self) -> None:
        note = self._loop.see(self.state.done)
        if note:
            self._note(note)
        if self._loop.stopped == "decided":
            self._stop("decided")

    def _stop(self, reason: str) -> None:
        loop, a = self._loop, self.plan.adaptive
        loop.stopped = reason
        n = self._n_adaptive()
        if reason == "decided":
            inf = loop.last.inference
            lo, hi = (math.nan if v is None else v for v in inf.alpha_ci)
            alpha = math.nan if inf.alpha is None else inf.alpha
            self._note(
                f"[design] decided after {n} adaptive trials: {loop.last.decision.verdict} "
                f"(alpha = {alpha:.2f}, 95% interval {lo:.2f} to {hi:.2f} before "
                "calibration; the report's is calibrated)"
            )
        else:
            minutes = (time.time() - self.started) / 60
            self._note(
                f"[design] budget spent ({n} adaptive trials, {minutes:.1f} min) before the "
                "verdict was decided; the report says what more would decide it"
            )
        if reason == "decided" and a.pin_trials and not self._pinning:
            self._pinning = True
            self._note(
                f"[design] pinning each batch size's best lr: {a.pin_trials} trials near "
                "each optimum (the verdict does not use them)"
            )
        if a.measure_noise_scale and not self._measure:
            self._note(
                "[design] measuring the gradient noise scale: one trial at each batch "
                "size's modelled best lr"
            )

    def _verify_due(self) -> bool:
        """A decided stop (or one a resumed sweep found), and every trial since (the ones
        running then, the noise-scale ones) has finished."""
        loop = self._loop
        return (
            loop is not None
            and loop.unchecked
            and not self.state.live
            and not self.state.requeue
            and self._all_pinned()
            and self._all_measured()
        )

    def _verify(self) -> None:
        """Look again, as strictly, at every finished trial: the report sees exactly these
        (the fit reads them in one order, `analysis.inference.canonical`, so the loop's finishing
        order and the results folder's give one answer).
        The trials still running when the loop stopped and the noise-scale trials can undo a
        decision (seen on a default sweep: decided `neither` at one look, `inconclusive` in the
        report one trial later); then the loop goes on, its budget permitting."""
        loop = self._loop
        n = len(self.state.done)
        if not (loop.stopped == "decided" and loop.n_seen == n):  # else: nothing new to see
            loop.stopped = ""
            loop.see(self.state.done, strict_now=True, extend=False)
        if loop.stopped == "decided":
            loop.verified = True
            self._note(
                f"[design] the verdict holds on all {n} finished trials: "
                f"{loop.last.decision.verdict}"
            )
            return
        last = loop.last
        self._note(
            f"[design] on all {n} finished trials the verdict is no longer decided "
            f"({design.status_line(last.inference, last.decision, n, last.ready, last.decided)}); "
            "the loop goes on"
        )

    def _measure_config(self, batch_size: int) -> dict[str, Any] | None:
        if batch_size not in self._measure:
            point = self._loop.measure_point(self.state.done, batch_size)
            self._measure[batch_size] = None
            if point is not None:
                seed = adaptive.trial_seed(
                    self.plan.adaptive.seed, batch_size, adaptive.MEASURE_OFFSET
                )
                config = space.trial(self.plan.base, batch_size, *point, seed, "confirm")
                self._measure[batch_size] = {**config, "measure_noise_scale": True}
        return self._measure[batch_size]

    def _pins(self) -> dict[int, int]:
        """Pin trials per batch size: finished, running or queued."""
        out: dict[int, int] = {}
        placed = [d.batch_size for d in self.state.done if d.phase == "pin"] + [
            int(lv.config["batch_size"]) for lv in self._unfinished() if lv.phase == "pin"
        ]
        for b in placed:
            out[b] = out.get(b, 0) + 1
        return out

    def _all_pinned(self) -> bool:
        """Every pin trial is done, running or queued (or there are none to place)."""
        if not (self._pinning and self._loop.stopped):
            return True
        pins = self._pins()
        return self._loop.pin_proposal(self.state.done, pins, self._pin_warmup()) is None

    def _pin_warmup(self) -> float:
        return float(min(self.plan.warmup_choices, default=0.0))

    def _next_pin(self) -> Live | None:
        loop = self._loop
        if not (self._pinning and loop.stopped):
            return None
        pins = self._pins()
        warmup = self._pin_warmup()
        prop = loop.pin_proposal(self.state.done, pins, warmup)
        if prop is None:
            return None
        b = prop.batch_size
        seed = adaptive.trial_seed(
            self.plan.adaptive.seed, b, adaptive.PIN_OFFSET + pins.get(b, 0)
        )
        return Live("pin", space.trial(self.plan.base, b, 10**prop.x, warmup, seed, "pin"))

    def _measuring(self) -> list[dict[str, Any]]:
        if not (self._loop.stopped and self.plan.adaptive.measure_noise_scale):
            return []
        if not self._all_pinned():  # measured at the pinned optimum
            return []
        configs = [self._measure_config(b) for b in self._loop.batch_sizes]
        return [c for c in configs if c is not None]

    def _all_measured(self) -> bool:
        """Every noise-scale trial is done, running or queued."""
        return all(config_key(c) in self._accounted for c in self._measuring())

    def _next_measure(self) -> Live | None:
        for config in self._measuring():
            if config_key(config) not in self._accounted:
                return Live("confirm", dict(config))
        return None

    # ------------------------------------------------------------------ telling Optuna
    def _told_value(self, done: Done) -> float:
        """The trial's metric, or for a diverged one a value worse than any seen."""
        return done.value if done.feasible else decide.penalty(self.state.done, self.maximize)

    def _tell_optuna(self, live: Live, done: Done, st: StudyState) -> None:
        value = None if done.failed else self._told_value(done)
        if live.number >= 0:
            self.studies.tell_asked(live.study, st, live.number, value)
        if value is not None and (live.number < 0 or live.study != st.name):
            self.studies.add(st, done, value)  # widened meanwhile, or retried after a failure

    def _maybe_widen(self, st: StudyState) -> bool:
        p = self.plan
        w = decide.widening(st, self.state.done, p.max_widenings, p.widen_decades, self.maximize)
        if w is None:
            return False
        old = (st.log10_lo, st.log10_hi)
        st.log10_lo, st.log10_hi = w.log10_range
        st.widenings += 1
        st.budget += w.extra
        self._tell_all_finished(st)  # the new study starts from everything run so far
        self._note(
            f"[optuna] B={st.batch_size}: best lr {w.best_lr:.3g} is at the {w.edge} "
            f"edge of [{10 ** old[0]:.3g}, {10 ** old[1]:.3g}]; widened to "
            f"[{10**st.log10_lo:.3g}, {10**st.log10_hi:.3g}] and added {w.extra} "
            f"trials (widening {st.widenings}/{p.max_widenings})"
        )
        return True

    def _tell_all_finished(self, st: StudyState) -> None:
        """Every finished grid and Optuna trial of the batch size is in its current study
        (each once)."""
        for d in self.state.done:
            if d.batch_size == st.batch_size and d.phase in ("grid", "optuna") and not d.failed:
                self.studies.add(st, d, self._told_value(d))

    def _maybe_bracket(self, st: StudyState) -> None:
        if self._pending(st.batch_size, "optuna"):
            return  # decided on all of the study's trials (a bracketing one may be running)
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

    # ------------------------------------------------------------------ rebuilding
    def _rebuild(self, records: list[TrialRecord]) -> None:
        """The state a run left behind, from the trial records and the journal."""
        finished = [r for r in records if r.status == DONE]
        finished.sort(key=lambda r: ((r.last or {}).get("timestamp", 0), r.trial_id))
        for r in finished:
            self.state.done.append(
                decide.outcome(r.trial_id, r.phase, r.config, r.last, self.plan.metric, False)
            )
        for r in records:
            if r.status == CONTINUE:
                self.state.live[r.trial_id] = Live(r.phase, r.config, folder=r.folder)
            elif r.status == RERUN:
                self.state.requeue.append(Live(r.phase, r.config))
        self._accounted = {config_key(r.config) for r in records}
        for st in self.plan.studies.values():
            self._rebuild_study(st, records)
        if self._loop is not None:
            self._rebuild_loop(records)
            return
        for st in self.plan.studies.values():  # a decision the kill came before
            if st.asked:
                self._maybe_widen(st) or self._maybe_bracket(st)

    def _rebuild_loop(self, records: list[TrialRecord]) -> None:
        """The design loop's state: the batch sizes it had added, and whether it had stopped
        (a measurement trial exists; those already placed keep their configuration), else a
        look at once, as strict as a second decided look in a row."""
        loop = self._loop
        searched = {r.config["batch_size"] for r in records if r.phase == "optuna"}
        loop.batch_sizes += sorted(searched - set(loop.batch_sizes))
        measured = [r for r in records if r.phase == "confirm"]
        if any(r.phase == "pin" for r in records):  # the pin phase had begun: it goes on
            self._pinning = True
            loop.pin_look(self.state.done)
        if measured or self._pinning:
            loop.see(self.state.done, extend=False)
            loop.stopped = "earlier"
            for r in measured:
                self._measure[int(r.config["batch_size"])] = dict(r.config)
            return
        loop.see(self.state.done, strict_now=True, extend=False)
        if loop.stopped == "decided":
            self._stop("decided")

    def _rebuild_study(self, st: StudyState, records: list[TrialRecord]) -> None:
        """A batch size's study state from the journal; the journal made to agree with the
        trial records: each asked trial finished as its Ray trial did (or queued to run
        again, or failed when it never reached Ray), each finished trial told once."""
        studies = self.studies.existing(st)
        with_attrs = [s for s in studies if "log10_lo" in s.user_attrs]
        if with_attrs:
            current = with_attrs[-1]
            name = current.study_name
            st.widenings = int(name.rsplit("-w", 1)[1]) if name != st.base_name else 0
            st.log10_lo = float(current.user_attrs["log10_lo"])
            st.log10_hi = float(current.user_attrs["log10_hi"])
            st.budget = int(current.user_attrs["budget"])
        by_id = {r.trial_id: r for r in records}
        by_key = {config_key(r.config): r for r in records if r.phase == "optuna"}
        st.asked = st.brackets = 0
        for study in studies:
            st.brackets += sum(
                1 for t in study.get_trials(deepcopy=False) if "bracket" in t.user_attrs
            )
            for t in asked_trials(study):
                self._reconcile_asked(st, study.study_name, t, by_id, by_key)
        # an Optuna trial that ran is asked, whatever the journal still says (it can be lost)
        ran = sum(
            1 for r in records if r.phase == "optuna" and r.config["batch_size"] == st.batch_size
        )
        st.asked = max(st.asked, ran)
        self._tell_all_finished(st)

    def _reconcile_asked(
        self,
        st: StudyState,
        study: str,
        t: Any,
        by_id: dict[str, TrialRecord],
        by_key: dict[tuple, TrialRecord],
    ) -> None:
        tid = t.user_attrs.get("trial_id")
        config = None
        if LR in t.params and WARMUP in t.params:
            config = space.trial(
                self.plan.base,
                st.batch_size,
                t.params[LR],
                t.params[WARMUP],
                int(t.user_attrs.get("seed", self.plan.optuna_seed)),
                "optuna",
            )
        rec = by_id.get(tid) or (by_key.get(config_key(config)) if config else None)
        if t.state == TrialState.RUNNING and rec is None and (tid is None or config is None):
            self.studies.tell_asked(study, st, t.number, None)  # killed while being asked
            return
        st.asked += 1
        if t.state != TrialState.RUNNING:
            return  # told already; a retried failure's result is added when it finishes
        if rec is not None and rec.trial_id != tid:
            self.studies.relink(study, t.number, rec.trial_id)
        if rec is None:  # asked, but Ray never recorded it: run it now
            self.state.requeue.append(Live("optuna", config, study, t.number))  # type: ignore[arg-type]
            self._accounted.add(config_key(config))  # type: ignore[arg-type]
        elif rec.status == DONE:
            done = self.done_of(rec.trial_id)
            value = None if done is None or done.failed else self._told_value(done)
            self.studies.tell_asked(study, st, t.number, value)
        else:
            waiting = self.state.live.get(rec.trial_id) or next(
                (
                    lv
                    for lv in self.state.requeue
                    if config_key(lv.config) == config_key(rec.config)
                ),
                None,
            )
            if waiting is not None:
                waiting.study, waiting.number = study, t.number


class SweepSearch(SearchGenerator):
    """Ray's wrapper around the searcher, without its pickled snapshots: Ray would save the
    searcher at most every ~10 s and unpickle that on resume; the sweep rebuilds it from the
    experiment folder instead (`sweep.resume`), so nothing is saved and nothing is loaded."""

    def has_checkpoint(self, dirpath: str) -> bool:
        return False

    def save_to_dir(self, dirpath: str, session_str: str) -> None:
        return None

    def restore_from_dir(self, dirpath: str) -> None:
        return None

    def add_configurations(self, experiments: Any) -> None:
        """Once: the runner registers the experiment itself, as Ray skips it on a resume."""
        if self.total_samples == 0:
            super().add_configurations(experiments)
