"""The sweep's Optuna studies: one per batch size, all in one journal file.

A study is named `<sweep>-<run>-B<batch size>` (a widened one adds `-w<k>`), where `<run>` is
the start time of the sweep plus a random suffix, recorded in the experiment folder
(`sweep_run.json`), so two sweeps sharing a journal never merge. The journal
(`JournalStorage`, never SQLite: parallel writers lock it) is written at every event and is the
studies' only copy: `Studies` reopens them from it and is never pickled.

What the journal records, so that a resumed sweep rebuilds its searcher from it and the trial
folders alone (`sweep.search`, `sweep.resume`):
- each study's lr range and trial budget (study user attrs `log10_lo`, `log10_hi`, `budget`);
- each Optuna trial asked for a Ray trial: user attrs `trial_id` (Ray's), `phase` = "optuna",
  `source` = "asked" (and `bracket` for a trial placed to bracket the best lr);
- each finished trial told to a study it was not asked from (the grid, or trials carried into a
  widened study), as Ray's `OptunaSearch.add_evaluated_point` does: `trial_id`, `phase`,
  `diverged`, `source` = "added". A Ray trial is added to a study at most once.

`repair_journal` makes a journal that a crash cut mid-line readable again.
"""

from __future__ import annotations

import json
import math
import os
import re
from typing import Any

import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend, JournalFileSymlinkLock
from optuna.trial import FrozenTrial, TrialState

from sweep.decide import Done, StudyState

LR, WARMUP = "lr", "warmup_epochs"  # the searched parameters, named as in the trial config
RECORD = '{"op_code":'  # how every journal line starts (Optuna writes compact JSON)


def make_sampler(kind: str, seed: int, budget: int) -> optuna.samplers.BaseSampler:
    startup = max(2, budget // 3)
    if kind == "tpe":
        # constant_liar: trials asked while others run are steered away from those
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup, constant_liar=True)
    if kind == "gp":
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=startup)
    if kind == "qmc":
        return optuna.samplers.QMCSampler(qmc_type="sobol", scramble=True, seed=seed)
    raise ValueError(f"unknown sampler '{kind}'; choose from tpe, gp, qmc")


class Studies:
    """Opens, asks and tells the sweep's studies (cached per process, rebuilt from the
    journal after a restore)."""

    def __init__(
        self, journal_path: str, sampler: str, maximize: bool, warmup_choices: list[float]
    ) -> None:
        self.storage = JournalStorage(JournalFileBackend(journal_path))
        self.sampler, self.maximize, self.warmup_choices = sampler, maximize, warmup_choices
        self._open: dict[str, optuna.Study] = {}

    def study(self, st: StudyState) -> optuna.Study:
        """The study a batch size uses now (created in the journal the first time, with its
        range and budget)."""
        if st.name not in self._open:
            study = optuna.create_study(
                study_name=st.name,
                storage=self.storage,
                load_if_exists=True,
                direction="maximize" if self.maximize else "minimize",
                sampler=make_sampler(self.sampler, st.sampler_seed, st.budget),
            )
            told = len(study.get_trials(deepcopy=False))
            if told and self.sampler in ("tpe", "gp"):  # reopened after a restart: a sampler
                # seeded as before would replay its first random suggestions
                study.sampler = make_sampler(
                    self.sampler, st.sampler_seed + 7919 * told, st.budget
                )
            if "log10_lo" not in study.user_attrs:
                study.set_user_attr("log10_lo", st.log10_lo)
                study.set_user_attr("log10_hi", st.log10_hi)
                study.set_user_attr("budget", st.budget)
            self._open[st.name] = study
        return self._open[st.name]

    def by_name(self, name: str, st: StudyState) -> optuna.Study:
        """`st`'s study, or the earlier one named `name` that a trial was asked from before a
        widening replaced it."""
        if name == st.name:
            return self.study(st)
        if name not in self._open:
            self._open[name] = optuna.load_study(study_name=name, storage=self.storage)
        return self._open[name]

    def distributions(self, st: StudyState, lr: float | None = None) -> dict[str, Any]:
        """The study's parameters, the lr range grown to hold `lr` (the design loop's trials
        go beyond a study's first range)."""
        lo, hi = st.log10_lo, st.log10_hi
        if lr is not None:
            lo, hi = min(lo, math.log10(lr)), max(hi, math.log10(lr))
        return {
            LR: optuna.distributions.FloatDistribution(*_bounds(lo, hi), log=True),
            WARMUP: optuna.distributions.CategoricalDistribution(self.warmup_choices),
        }

    def ask(
        self,
        st: StudyState,
        trial_id: str,
        log10_range: tuple[float, float] | None = None,
        fixed: dict[str, float] | None = None,
        attrs: dict[str, Any] | None = None,
        seed_base: int | None = None,
    ) -> tuple[int, float, float]:
        """A new Optuna trial of `st`'s study for Ray's trial `trial_id`: (number, lr, warmup).
        The design loop asks within its own `log10_range` (the study's otherwise), and fixes
        the parameters it chose (`fixed`, through Optuna's `enqueue_trial`); `attrs` are
        recorded on the trial, and with `seed_base` the trial's own seed (`seed_base` + its
        number)."""
        study = self.study(st)
        if fixed:
            study.enqueue_trial(fixed, user_attrs=attrs or {}, skip_if_exists=False)
        trial = study.ask()
        lo, hi = log10_range if log10_range is not None else (st.log10_lo, st.log10_hi)
        lr = trial.suggest_float(LR, *_bounds(lo, hi), log=True)
        warmup = trial.suggest_categorical(WARMUP, self.warmup_choices)
        # one journal record per attribute: `trial_id` goes last, so that a kill between two
        # of them leaves a trial without it (failed on resume as "killed while being asked"),
        # never one that resume completes without its phase, source or seed
        trial.set_user_attr("phase", "optuna")
        trial.set_user_attr("source", "asked")
        for key, value in (attrs or {}).items():
            trial.set_user_attr(key, value)
        if seed_base is not None:
            trial.set_user_attr("seed", seed_base + trial.number)
        trial.set_user_attr("trial_id", trial_id)
        return trial.number, lr, warmup

    def relink(self, name: str, number: int, trial_id: str) -> None:
        """An asked trial now runs as another Ray trial (its first one was lost in a kill)."""
        study_id = self.storage.get_study_id_from_name(name)
        storage_id = self.storage.get_trial_id_from_study_id_trial_number(study_id, number)
        self.storage.set_trial_user_attr(storage_id, "trial_id", trial_id)

    def tell_asked(self, name: str, st: StudyState, number: int, value: float | None) -> None:
        """Finish an asked trial with its value (None: it failed)."""
        study = self.by_name(name, st)
        if value is None:
            study.tell(number, state=TrialState.FAIL)
        else:
            study.tell(number, value)

    def add(self, st: StudyState, done: Done, value: float) -> bool:
        """Tell `st`'s current study a finished trial that it did not ask for (once: False when
        it already holds that trial)."""
        study = self.study(st)
        if done.trial_id and done.trial_id in told_ids(study):
            return False
        study.add_trial(
            optuna.trial.create_trial(
                params={LR: done.lr, WARMUP: done.warmup},
                distributions=self.distributions(st, done.lr),
                value=value,
                user_attrs={
                    "trial_id": done.trial_id,
                    "phase": done.phase,
                    "diverged": done.diverged,
                    "source": "added",
                },
            )
        )
        return True

    def enqueue(self, st: StudyState, lr: float, warmup: float) -> None:
        """Make `st`'s next ask return this (lr, warmup), marked as a bracketing trial, and
        record the study's grown budget."""
        study = self.study(st)
        study.enqueue_trial({LR: lr, WARMUP: warmup}, user_attrs={"bracket": True})
        study.set_user_attr("budget", st.budget)

    # ------------------------------------------------------------------ after a restart
    def existing(self, st: StudyState) -> list[optuna.Study]:
        """The batch size's studies in the journal, the base one first, then each widening."""
        pattern = re.compile(re.escape(st.base_name) + r"(-w(\d+))?$")
        found = []
        for name in optuna.get_all_study_names(self.storage):
            m = pattern.match(name)
            if m:
                found.append((int(m.group(2) or 0), name))
        # read only: opening one here would cache it without the sweep's sampler
        return [
            optuna.load_study(study_name=name, storage=self.storage) for _, name in sorted(found)
        ]


def lr_bounds(st: StudyState) -> tuple[float, float]:
    """The study's lr range (see `_bounds`)."""
    return _bounds(st.log10_lo, st.log10_hi)


def _bounds(log10_lo: float, log10_hi: float) -> tuple[float, float]:
    """An lr range, a hair wider than 10**log10 gives back: a grid lr at its edge
    (0.025 -> 10**log10(0.025) = 0.025000000000000005) must fit in it."""
    return 10**log10_lo * (1 - 1e-9), 10**log10_hi * (1 + 1e-9)


def told_ids(study: optuna.Study) -> set[str]:
    """Ray trial ids whose result the study holds (COMPLETE trials)."""
    return {
        str(t.user_attrs["trial_id"])
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if "trial_id" in t.user_attrs
    }


def asked_trials(study: optuna.Study) -> list[FrozenTrial]:
    """The study's trials that were asked for a Ray trial (or were being asked in a crash)."""
    return [
        t
        for t in study.get_trials(deepcopy=False)
        if t.user_attrs.get("source") == "asked"
        or (t.state == TrialState.RUNNING and "source" not in t.user_attrs)
    ]


def repair_journal(path: str, sole_user: bool) -> str | None:
    """Make a journal that a crash cut mid-line readable again; return a note, or None.

    A torn last line (no newline: the process died while appending) is cut off; a line that is
    not JSON (a torn write with the next record glued to it) keeps the whole record at its end.
    With `sole_user` (the journal lives in the experiment folder, which this run has locked) a
    journal lock left behind by a killed process is removed rather than waited out.
    """
    if sole_user and os.path.lexists(path + ".lock"):
        os.unlink(path + ".lock")
    if not os.path.isfile(path):
        return None
    lock = JournalFileSymlinkLock(path)
    lock.acquire()
    try:
        with open(path, "rb") as f:
            data = f.read()
        cut = data.rfind(b"\n") + 1
        lines, torn = data[:cut].splitlines(keepends=True), data[cut:]
        kept, mended = [], 0
        for line in lines:
            try:
                json.loads(line)
                kept.append(line)
                continue
            except ValueError:
                mended += 1
            start = line.rfind(RECORD.encode())
            if start > 0:
                try:
                    json.loads(line[start:])
                    kept.append(line[start:])
                except ValueError:
                    pass
        if not torn and not mended:
            return None
        if mended:
            tmp = path + f".repair-{os.getpid()}"
            with open(tmp, "wb") as f:
                f.writelines(kept)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, os.stat(path).st_mode & 0o777)
            os.replace(tmp, path)
        else:
            os.truncate(path, cut)  # earlier records keep their byte offsets
    finally:
        lock.release()
    parts = (["a torn last line"] if torn else []) + (
        [f"{mended} damaged line{'s' if mended != 1 else ''}"] if mended else []
    )
    return f"[sweep] repaired the Optuna journal {path}: dropped {' and '.join(parts)}"
