"""What a running sweep prints, and which trials Ray really has: a Ray Tune callback.

Per finished trial, the searcher's new notes (a widened range, a bracketing trial), then one
line:

    [sweep 15/98] grid 14/14 | optuna 1/56 | confirm 0/28 | optuna B=8 lr=0.000758 warmup=0
    seed=0: val_loss 0.3723 (9.1 s; 1.9 min elapsed)

and with `design: adaptive`, the answer forming when it changed:

    [design] alpha = 0.62 [0.41, 0.83] after 40 trials; deciding: linear vs neither

It tells the searcher where each trial's files are written (`trial_started`) and copies a
trial's files into the experiment folder at each of its epoch checkpoints. At the first
step of a run (a resumed one included) it hands the searcher the trials Ray
actually has, so that a trial expected to continue from its checkpoint but missing from Ray runs
again (`PhasedSearcher.adopt_ray_trials`). The callback holds the searcher itself; the runner
reads how the run ended from the searcher (`state.finished`). A trial that failed because the
disk is full stops the sweep at once rather than being retried (`stop_if_disk_full`).
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

from ray.tune import Callback

from sweep import resume
from sweep.decide import Done
from sweep.search import PhasedSearcher
from sweep.stopping import DiskFull, no_space_is_fatal


def stop_if_disk_full(trial: Any) -> None:
    """A trial that failed for want of disk space stops the whole sweep (`DiskFull`)."""
    try:
        text = Path(trial.error_file or "").read_text()
    except (OSError, UnicodeDecodeError):
        return
    if "No space left on device" in text or "Disk quota exceeded" in text:
        raise DiskFull(trial.path or "")


def progress_line(
    done: Done,
    counts: dict[str, int],
    totals: dict[str, int],
    metric: str,
    trial_s: float,
    elapsed_s: float,
) -> str:
    n, total = sum(counts.values()), sum(totals.values())
    phases = " | ".join(
        f"{p} {counts[p]}/{totals[p]}" if totals[p] else f"{p} {counts[p]}"
        for p in totals
        if totals[p] or counts.get(p)
    )
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
        self._adopted = False

    def on_step_begin(self, iteration: int, trials: list, **info: Any) -> None:
        if not self._adopted:
            self._adopted = True
            self.searcher.adopt_ray_trials({t.trial_id for t in trials})

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.searcher.trial_started(trial.trial_id, trial.local_path, trial.path)

    def on_checkpoint(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        # the trial's rows so far into its folder: Ray restores a retried trial's result.json
        # from there, which it would otherwise do from its last (older) snapshot
        with no_space_is_fatal():
            resume.copy_trial_files(trial.local_path, trial.path)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._report(trial)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        stop_if_disk_full(trial)
        self._report(trial)

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        stop_if_disk_full(trial)  # retrying on a full disk fails again: stop the sweep now

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
        answer = s.answer()  # design: adaptive: the verdict forming
        if answer:
            print(answer, flush=True)
