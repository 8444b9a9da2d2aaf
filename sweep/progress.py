"""What a running sweep prints, and what it leaves for the runner: a Ray Tune callback.

Per finished trial, the searcher's new notes (a widened range, a bracketing trial), then one
line:

    [sweep 15/98] grid 14/14 | optuna 1/56 | confirm 0/28 | optuna B=8 lr=0.000758 warmup=0
    seed=0: val_loss 0.3723 (9.1 s; 1.9 min elapsed)

When Ray's run ends, finished or interrupted, the callback records whether the searcher had
anything left to suggest; `sweep.runner` reads it with `last_run()` (a run restored by
`Tuner.restore` uses Ray's unpickled copy of this callback, which the runner cannot reach, and
Ray runs callbacks in the driver's process, so the record is kept here). The callback holds the
searcher itself: Ray pickles both into one experiment file, so a restored run shares them too.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

from ray.tune import Callback

from sweep.decide import Done
from sweep.search import PhasedSearcher


@dataclass(frozen=True)
class RunEnd:
    finished: bool  # the searcher had nothing left to suggest
    trials_done: int  # trials the searcher has seen finish, over all runs of the sweep


_last_run: list[RunEnd] = []  # the end of the last run in this process


def last_run() -> RunEnd | None:
    """How the last `Tuner.fit()` in this process ended (None: it never reached its end)."""
    return _last_run[-1] if _last_run else None


def forget_last_run() -> None:
    _last_run.clear()


def progress_line(
    done: Done,
    counts: dict[str, int],
    totals: dict[str, int],
    metric: str,
    trial_s: float,
    elapsed_s: float,
) -> str:
    n, total = sum(counts.values()), sum(totals.values())
    phases = " | ".join(f"{p} {counts[p]}/{totals[p]}" for p in totals if totals[p])
    outcome = (
        "FAILED" if done.failed else "diverged" if done.diverged else f"{metric} {done.value:.4f}"
    )
    return (
        f"[sweep {n}/{total}] {phases} | {done.phase} B={done.batch_size} "
        f"lr={done.lr:.3g} warmup={done.warmup:g} seed={done.seed}: {outcome} "
        f"({trial_s:.1f} s; {elapsed_s / 60:.1f} min elapsed)"
    )


class SweepProgress(Callback):
    def __init__(self, searcher: PhasedSearcher) -> None:
        self.searcher = searcher

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._report(trial)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._report(trial)

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        state = self.searcher.state
        _last_run[:] = [RunEnd(state.finished, len(state.done))]

    def _report(self, trial: Any) -> None:
        s = self.searcher
        for note in s.take_notes():
            print(note, flush=True)
        done = s.done_of(trial.trial_id)
        if done is None:  # a trial the searcher did not suggest in this run
            return
        last = trial.last_result or {}
        trial_s = math.nan if done.failed else float(last.get("time_total_s", math.nan))
        print(
            progress_line(
                done,
                s.finished_counts(),
                s.totals(),
                s.plan.metric,
                trial_s,
                time.time() - s.started,
            ),
            flush=True,
        )
