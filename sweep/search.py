"""One Ray Tune searcher that runs the sweep's three phases in one experiment.

1. grid: the fixed linear-scaling grid (`space.grid_trials`), in batch-size order.
2. optuna: one Optuna study per batch size (batch size is the scientific variable; lr and
   warmup are nuisance parameters), started from that batch size's grid results (told to the
   study as evaluated trials, not re-run), studies served round-robin so they run concurrently.
   When a study's best lr lies within one step (range / trials) of an edge of its range, the
   range is widened (at most `max_widenings` times, each adding half the budget): a new study
   `<name>-w<k>` over the wider range is seeded with every earlier trial and continues.
3. confirm: as soon as a batch size's study is done, its `top_k` best (lr, warmup) pairs are
   re-run with `confirm.seeds` new seeds, so the analysis sees seed-to-seed spread.

Studies live in a JournalStorage file inside the experiment folder (never SQLite: parallel
writers lock it); their names carry the sweep name, a run id and the batch size, so two
sweeps never merge. The searcher limits concurrency itself (`set_max_concurrency`), so the
`ConcurrencyLimiter` around it passes calls through and its state is saved with ours: Ray's
limiter does not save the trials it holds, which breaks `Tuner.restore`.
"""

from __future__ import annotations

import math
import pickle
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import optuna
from ray.tune.search import Searcher

optuna.logging.set_verbosity(optuna.logging.WARNING)

LR, WARMUP = "lr", "warmup_epochs"
MAX_BRACKETS = 2  # extra trials per study to bracket a best lr that sits at a feasible edge


@dataclass
class StudyState:
    batch_size: int
    log10_lo: float
    log10_hi: float
    budget: int  # Optuna trials to run (grows with each widening)
    sampler_seed: int
    name: str
    asked: int = 0
    widenings: int = 0
    brackets: int = 0  # extra trials placed to bracket the best lr


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
class Done:
    phase: str
    batch_size: int
    lr: float
    warmup: float
    seed: int
    value: float  # nan when diverged or failed
    diverged: bool
    failed: bool = False


@dataclass
class Live:
    phase: str
    config: dict[str, Any]
    study: str = ""
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


def make_sampler(kind: str, seed: int, budget: int) -> optuna.samplers.BaseSampler:
    startup = max(2, budget // 3)
    if kind == "tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup)
    if kind == "gp":
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=startup)
    if kind == "qmc":
        return optuna.samplers.QMCSampler(qmc_type="sobol", scramble=True, seed=seed)
    raise ValueError(f"unknown sampler '{kind}'; choose from tpe, gp, qmc")


class PhasedSearcher(Searcher):
    def __init__(self, plan: Plan, max_concurrent: int = 1) -> None:
        super().__init__(metric=plan.metric, mode=plan.mode)
        self.plan = plan
        self.state = State()
        self.max_concurrent = max_concurrent
        self.run_id = uuid.uuid4().hex[:8]
        self.started = time.time()
        self._studies: dict[str, optuna.Study] = {}  # rebuilt from the journal, not pickled

    # ------------------------------------------------------------------ Ray's interface
    def set_max_concurrency(self, max_concurrent: int) -> bool:
        self.max_concurrent = max_concurrent
        return True

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict,
                              **spec: Any) -> bool:
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

    def on_trial_complete(self, trial_id: str, result: dict | None = None,
                          error: bool = False) -> None:
        live = self.state.live.pop(trial_id, None)
        if live is None:
            return
        c = live.config
        diverged = bool(result and result.get("diverged"))
        value = float(result[self.plan.metric]) if result and self.plan.metric in result \
            else math.nan
        if diverged or not math.isfinite(value):
            value = math.nan
        done = Done(live.phase, c["batch_size"], c["lr"], c["warmup_epochs"], c["seed"],
                    value, diverged, failed=error or result is None)
        self.state.done.append(done)
        if live.phase == "grid" and self.plan.studies:
            self._tell_grid(done)
        elif live.phase == "optuna":
            self._tell_optuna(live, done)
            self._maybe_widen(c["batch_size"]) or self._maybe_bracket(c["batch_size"])
        self._print_progress(done, result)

    def get_state(self) -> dict[str, Any]:
        return {"plan": self.plan, "state": self.state, "run_id": self.run_id,
                "started": self.started, "max_concurrent": self.max_concurrent}

    def set_state(self, state: dict[str, Any]) -> None:
        self.plan, self.state = state["plan"], state["state"]
        self.run_id, self.started = state["run_id"], state["started"]
        self.max_concurrent = state["max_concurrent"]
        self._studies = {}

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.get_state(), f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:  # our own file, written by `save`
            self.set_state(pickle.load(f))  # noqa: S301

    def __getstate__(self) -> dict[str, Any]:
        d = self.__dict__.copy()
        d["_studies"] = {}
        return d

    # ------------------------------------------------------------------ totals
    def totals(self) -> dict[str, int]:
        p = self.plan
        n_confirm = len(p.batch_sizes) * p.confirm_top_k * len(p.confirm_seeds)
        return {"grid": len(p.grid), "optuna": sum(s.budget for s in p.studies.values()),
                "confirm": n_confirm}

    def finished_counts(self) -> dict[str, int]:
        counts = {"grid": 0, "optuna": 0, "confirm": 0}
        for d in self.state.done:
            counts[d.phase] += 1
        return counts

    # ------------------------------------------------------------------ phases
    def _next_grid(self) -> Live | None:
        if self.state.grid_next >= len(self.plan.grid):
            return None
        config = dict(self.plan.grid[self.state.grid_next])
        self.state.grid_next += 1
        return Live("grid", config)

    def _grid_finished(self, batch_size: int) -> bool:
        if any(c["batch_size"] == batch_size for c in self.plan.grid[self.state.grid_next:]):
            return False
        return not any(lv.phase == "grid" and lv.config["batch_size"] == batch_size
                       for lv in self.state.live.values())

    def _in_flight(self, batch_size: int, phase: str) -> int:
        return sum(1 for lv in self.state.live.values()
                   if lv.phase == phase and lv.config["batch_size"] == batch_size)

    def _next_optuna(self) -> Live | None:
        ready = [s for s in self.plan.studies.values()
                 if s.asked < s.budget and self._grid_finished(s.batch_size)]
        if not ready:
            return None
        st = min(ready, key=lambda s: (s.asked + self._in_flight(s.batch_size, "optuna"),
                                       s.batch_size))
        study = self._study(st)
        trial = study.ask()
        lr = trial.suggest_float(LR, 10**st.log10_lo, 10**st.log10_hi, log=True)
        warmup = trial.suggest_categorical(WARMUP, self.plan.warmup_choices)
        trial.set_user_attr("phase", "optuna")
        st.asked += 1
        config = {**self.plan.base, "batch_size": st.batch_size, "lr": lr,
                  "warmup_epochs": warmup, "seed": self.plan.optuna_seed, "phase": "optuna"}
        return Live("optuna", config, study=st.name, number=trial.number)

    def _study_finished(self, st: StudyState) -> bool:
        return (st.asked >= st.budget and self._in_flight(st.batch_size, "optuna") == 0
                and self._grid_finished(st.batch_size))

    def _confirming(self) -> bool:
        return bool(self.plan.confirm_top_k and self.plan.confirm_seeds)

    def _next_confirm(self) -> Live | None:
        for b in self.plan.batch_sizes if self._confirming() else ():
            st = self.plan.studies.get(b)
            finished = self._study_finished(st) if st else self._grid_finished(b)
            if finished and b not in self.state.confirmed:
                self.state.confirm_queue.extend(self._confirm_configs(b))
                self.state.confirmed.append(b)
        if not self.state.confirm_queue:
            return None
        return Live("confirm", self.state.confirm_queue.pop(0))

    def _confirm_configs(self, batch_size: int) -> list[dict[str, Any]]:
        ranked = self._ranked(batch_size)
        picked: list[tuple[float, float]] = []
        for d in ranked:
            if (d.lr, d.warmup) not in picked:
                picked.append((d.lr, d.warmup))
            if len(picked) == self.plan.confirm_top_k:
                break
        return [{**self.plan.base, "batch_size": batch_size, "lr": lr, "warmup_epochs": w,
                 "seed": s, "phase": "confirm"}
                for lr, w in picked for s in self.plan.confirm_seeds]

    def _ranked(self, batch_size: int) -> list[Done]:
        feasible = [d for d in self.state.done if d.batch_size == batch_size
                    and d.phase != "confirm" and math.isfinite(d.value)]
        return sorted(feasible, key=lambda d: d.value, reverse=self.plan.mode == "max")

    def _nothing_left(self) -> bool:
        if self.state.grid_next < len(self.plan.grid) or self.state.confirm_queue:
            return False
        if any(s.asked < s.budget for s in self.plan.studies.values()):
            return False
        return not self._confirming() or set(self.plan.batch_sizes) <= set(self.state.confirmed)

    # ------------------------------------------------------------------ Optuna
    def _storage(self) -> optuna.storages.BaseStorage:
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        return JournalStorage(JournalFileBackend(self.plan.journal_path))

    def _study(self, st: StudyState) -> optuna.Study:
        if st.name not in self._studies:
            self._studies[st.name] = optuna.create_study(
                study_name=st.name, storage=self._storage(), load_if_exists=True,
                direction="minimize" if self.plan.mode == "min" else "maximize",
                sampler=make_sampler(self.plan.sampler, st.sampler_seed, st.budget),
            )
        return self._studies[st.name]

    def _distributions(self, st: StudyState) -> dict[str, Any]:
        return {
            LR: optuna.distributions.FloatDistribution(10**st.log10_lo, 10**st.log10_hi,
                                                       log=True),
            WARMUP: optuna.distributions.CategoricalDistribution(self.plan.warmup_choices),
        }

    def _penalty(self) -> float:
        """Value told for a diverged trial: worse than every finite value seen."""
        finite = [d.value for d in self.state.done if math.isfinite(d.value)]
        if not finite:
            return 10.0 if self.plan.mode == "min" else 0.0
        spread = max(finite) - min(finite)
        if self.plan.mode == "min":
            return max(finite) + max(spread, 1e-3)
        return min(finite) - max(spread, 1e-3)

    def _value_or_penalty(self, done: Done) -> float:
        return done.value if math.isfinite(done.value) else self._penalty()

    def _tell_grid(self, done: Done) -> None:
        st = self.plan.studies.get(done.batch_size)
        if st is None or done.failed:
            return
        self._study(st).add_trial(optuna.trial.create_trial(
            params={LR: done.lr, WARMUP: done.warmup}, distributions=self._distributions(st),
            value=self._value_or_penalty(done), user_attrs={"phase": "grid",
                                                             "diverged": done.diverged},
        ))

    def _tell_optuna(self, live: Live, done: Done) -> None:
        st = self.plan.studies[done.batch_size]
        study = self._study_by_name(live.study, st)
        attrs = {"phase": "optuna", "diverged": done.diverged}
        if done.failed:
            study.tell(live.number, state=optuna.trial.TrialState.FAIL)
            return
        study.tell(live.number, self._value_or_penalty(done))
        if live.study != st.name:  # widened meanwhile: carry the result into the new study
            self._study(st).add_trial(optuna.trial.create_trial(
                params={LR: done.lr, WARMUP: done.warmup},
                distributions=self._distributions(st),
                value=self._value_or_penalty(done), user_attrs=attrs))

    def _study_by_name(self, name: str, st: StudyState) -> optuna.Study:
        if name == st.name:
            return self._study(st)
        if name not in self._studies:
            self._studies[name] = optuna.load_study(study_name=name, storage=self._storage())
        return self._studies[name]

    def _maybe_bracket(self, batch_size: int) -> None:
        """When a study's budget is spent and its best lr has no feasible trial on one side
        (typically just below the divergence edge), add one trial at the geometric midpoint
        of the gap, at most MAX_BRACKETS times: the analysis needs the optimum bracketed."""
        st = self.plan.studies[batch_size]
        if st.asked < st.budget or st.brackets >= MAX_BRACKETS:
            return
        ranked = self._ranked(batch_size)
        if not ranked:
            return
        best = ranked[0]
        tried = [d for d in self.state.done if d.batch_size == batch_size
                 and d.phase in ("grid", "optuna") and not d.failed]
        feasible = [d.lr for d in tried if math.isfinite(d.value)]
        infeasible = [d.lr for d in tried if not math.isfinite(d.value)]
        target = None
        if not [lr for lr in feasible if lr > best.lr]:
            above = min([lr for lr in infeasible if lr > best.lr], default=10**st.log10_hi)
            target = math.sqrt(best.lr * above)
        elif not [lr for lr in feasible if lr < best.lr]:
            below = max([lr for lr in infeasible if lr < best.lr], default=10**st.log10_lo)
            target = math.sqrt(best.lr * below)
        if target is None or abs(math.log10(target / best.lr)) < 0.02:
            return
        st.brackets += 1
        st.budget += 1
        self._study(st).enqueue_trial({LR: target, WARMUP: best.warmup},
                                      user_attrs={"bracket": True})
        msg = (f"[optuna] B={batch_size}: best lr {best.lr:.3g} has no feasible trial on one "
               f"side; added a trial at {target:.3g} to bracket it")
        self.state.notes.append(msg)
        print(msg, flush=True)

    def _maybe_widen(self, batch_size: int) -> bool:
        st = self.plan.studies[batch_size]
        n_optuna = sum(1 for d in self.state.done
                       if d.phase == "optuna" and d.batch_size == batch_size)
        ranked = self._ranked(batch_size)
        if st.widenings >= self.plan.max_widenings or not ranked or n_optuna < max(
                3, st.budget // 3):
            return False
        step = (st.log10_hi - st.log10_lo) / max(st.budget, 1)
        best = math.log10(ranked[0].lr)
        up, down = best > st.log10_hi - step, best < st.log10_lo + step
        if not (up or down):
            return False
        old = (st.log10_lo, st.log10_hi)
        st.log10_hi += self.plan.widen_decades if up else 0.0
        st.log10_lo -= self.plan.widen_decades if down else 0.0
        st.widenings += 1
        extra = max(1, st.budget // 2)
        st.budget += extra
        st.name = f"{st.name.split('-w')[0]}-w{st.widenings}"
        study = self._study(st)
        for d in self.state.done:
            if d.batch_size == batch_size and d.phase in ("grid", "optuna") and not d.failed:
                study.add_trial(optuna.trial.create_trial(
                    params={LR: d.lr, WARMUP: d.warmup}, distributions=self._distributions(st),
                    value=self._value_or_penalty(d),
                    user_attrs={"phase": d.phase, "diverged": d.diverged}))
        msg = (f"[optuna] B={batch_size}: best lr {10**best:.3g} is at the "
               f"{'upper' if up else 'lower'} edge of [{10**old[0]:.3g}, {10**old[1]:.3g}]; "
               f"widened to [{10**st.log10_lo:.3g}, {10**st.log10_hi:.3g}] and added {extra} "
               f"trials (widening {st.widenings}/{self.plan.max_widenings})")
        self.state.notes.append(msg)
        print(msg, flush=True)
        return True

    # ------------------------------------------------------------------ output
    def _print_progress(self, done: Done, result: dict | None) -> None:
        totals, counts = self.totals(), self.finished_counts()
        n, total = sum(counts.values()), sum(totals.values())
        phases = " | ".join(f"{p} {counts[p]}/{totals[p]}" for p in totals if totals[p])
        outcome = ("FAILED" if done.failed else "diverged" if done.diverged
                   else f"{self.plan.metric} {done.value:.4f}")
        secs = (result or {}).get("time_total_s", math.nan)
        elapsed = time.time() - self.started
        print(f"[sweep {n}/{total}] {phases} | {done.phase} B={done.batch_size} "
              f"lr={done.lr:.3g} warmup={done.warmup:g} seed={done.seed}: {outcome} "
              f"({secs:.1f} s; {elapsed / 60:.1f} min elapsed)", flush=True)
