"""The sweep's Optuna studies: one per batch size, all in one journal file.

A study is named `<sweep>-<run>-B<batch size>` (a widened one adds `-w<k>`), so two sweeps
sharing a storage never merge. The journal (`JournalStorage`, never SQLite: parallel writers
lock it) is the studies' only copy: `Studies` reopens them from it on demand and is never
pickled with the searcher. Trials that ran outside a study (the grid, or trials carried into a
widened study) are told to it by `Studies.add`, as Ray's `OptunaSearch.add_evaluated_point`
does.
"""

from __future__ import annotations

from typing import Any

import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from sweep.decide import Done, StudyState

LR, WARMUP = "lr", "warmup_epochs"  # the searched parameters, named as in the trial config


def make_sampler(kind: str, seed: int, budget: int) -> optuna.samplers.BaseSampler:
    startup = max(2, budget // 3)
    if kind == "tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup)
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
        """The study a batch size uses now (created in the journal the first time)."""
        if st.name not in self._open:
            self._open[st.name] = optuna.create_study(
                study_name=st.name,
                storage=self.storage,
                load_if_exists=True,
                direction="maximize" if self.maximize else "minimize",
                sampler=make_sampler(self.sampler, st.sampler_seed, st.budget),
            )
        return self._open[st.name]

    def by_name(self, name: str, st: StudyState) -> optuna.Study:
        """`st`'s study, or the earlier one named `name` that a trial was asked from before a
        widening replaced it."""
        if name == st.name:
            return self.study(st)
        if name not in self._open:
            self._open[name] = optuna.load_study(study_name=name, storage=self.storage)
        return self._open[name]

    def distributions(self, st: StudyState) -> dict[str, Any]:
        return {
            LR: optuna.distributions.FloatDistribution(10**st.log10_lo, 10**st.log10_hi, log=True),
            WARMUP: optuna.distributions.CategoricalDistribution(self.warmup_choices),
        }

    def ask(self, st: StudyState) -> tuple[int, float, float]:
        """A new Optuna trial of `st`'s study: (trial number, lr, warmup)."""
        trial = self.study(st).ask()
        lr = trial.suggest_float(LR, 10**st.log10_lo, 10**st.log10_hi, log=True)
        warmup = trial.suggest_categorical(WARMUP, self.warmup_choices)
        trial.set_user_attr("phase", "optuna")
        return trial.number, lr, warmup

    def tell_asked(self, name: str, st: StudyState, number: int, value: float | None) -> None:
        """Finish an asked trial with its value (None: it failed)."""
        study = self.by_name(name, st)
        if value is None:
            study.tell(number, state=optuna.trial.TrialState.FAIL)
        else:
            study.tell(number, value)

    def add(self, st: StudyState, done: Done, value: float) -> None:
        """Tell `st`'s current study a finished trial that it did not ask for."""
        self.study(st).add_trial(
            optuna.trial.create_trial(
                params={LR: done.lr, WARMUP: done.warmup},
                distributions=self.distributions(st),
                value=value,
                user_attrs={"phase": done.phase, "diverged": done.diverged},
            )
        )

    def enqueue(self, st: StudyState, lr: float, warmup: float) -> None:
        """Make `st`'s next ask return this (lr, warmup), marked as a bracketing trial."""
        self.study(st).enqueue_trial({LR: lr, WARMUP: warmup}, user_attrs={"bracket": True})
