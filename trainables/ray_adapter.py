"""The only place Ray touches training: a Tune function trainable around `train()` (the
project's loop) or, when the trial names one (`trainable`), the user's own training function
(`trainables.own_loop.run_own`).

Per epoch it reports the contract's metrics (`trainables.contract.EpochMetrics`, plus
`node_id` and `hostname` for provenance) with a checkpoint, so a restored or retried trial
continues from its last finished epoch (a user's function that yields no state has no
checkpoint: a retry starts it again). The data set is cached per worker process
(`load_dataset`), so a reused actor keeps it between trials; torch gets exactly the CPU
threads Ray assigned to the trial.

`TensorBoardLogger`, used in the driver in place of Ray's default TensorBoard logger, writes the
curves people open TensorBoard for under clear tags that sort first (`acc/val`, `loss/train`,
`loss/val`, `lr`, `noise_scale`; against examples seen, `timesteps_total`), every other
reported number under Ray's usual `ray/tune/<key>`, and gives the HParams view the scientific
keys (batch_size, lr, warmup_epochs, seed, phase, optimizer) beside the final metrics instead
of all twenty-odd keys of params.json.

Fault injection for the resilience tests lives here, outside the trial config: with
$SWEEP_INJECT_FAULT set in the sweep's environment (which Ray's local workers inherit), the
worker kills itself (`_maybe_inject_fault`).
"""

from __future__ import annotations

import logging
import math
import os
import signal
import socket
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

import ray
import torch
from ray import tune
from ray.tune.logger import TBXLoggerCallback

from trainables.contract import config_from_dict
from trainables.data import load_dataset
from trainables.own_loop import run_own
from trainables.train import train

STATE_FILE = "state.pt"
FAULT_ENV = "SWEEP_INJECT_FAULT"
# TensorBoard tags of the curves, by result key: they sort before Ray's `ray/tune/...`
CURVE_TAGS = {
    "train_loss": "loss/train",
    "val_loss": "loss/val",
    "val_acc": "acc/val",
    "lr_now": "lr",
    "noise_scale": "noise_scale",
}
HPARAM_KEYS = ("batch_size", "lr", "warmup_epochs", "seed", "phase", "optimizer")
FINAL_METRIC_TAGS = (*CURVE_TAGS.values(), "ray/tune/steps_to_target", "ray/tune/diverged")


def _device_and_threads() -> tuple[str, int]:
    assigned = ray.get_runtime_context().get_assigned_resources()
    threads = max(1, int(assigned.get("CPU", 1)))
    use_gpu = assigned.get("GPU", 0) > 0 and torch.cuda.is_available()
    return ("cuda" if use_gpu else "cpu"), threads


def _load_resume_state() -> dict[str, Any] | None:
    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        return None
    with checkpoint.as_directory() as folder:
        # our own checkpoint of tensors and numbers: weights_only refuses anything else
        return torch.load(Path(folder) / STATE_FILE, weights_only=True, map_location="cpu")


def tune_trainable(config: dict[str, Any]) -> None:
    logging.getLogger("ray.train").setLevel(logging.WARNING)  # one INFO line per checkpoint
    cfg = config_from_dict(config)
    device, threads = _device_and_threads()
    torch.set_num_threads(threads)
    resume = _load_resume_state()
    provenance = {
        "node_id": ray.get_runtime_context().get_node_id(),
        "hostname": socket.gethostname(),
    }
    _maybe_inject_fault(None, resume is not None)

    def report(metrics: dict[str, Any], state: dict[str, Any] | None) -> None:
        if state is None:
            tune.report({**metrics, **provenance})
        else:
            with tempfile.TemporaryDirectory() as folder:
                torch.save(state, Path(folder) / STATE_FILE)
                tune.report(
                    {**metrics, **provenance},
                    checkpoint=tune.Checkpoint.from_directory(folder),
                )
        _maybe_inject_fault(metrics["epoch"], resume is not None)

    if cfg.trainable:
        run_own(cfg, device, resume, report)
        return
    data = load_dataset(cfg.dataset, cfg.data_dir, device, cfg.params)
    for epoch in train(cfg, data, resume):
        report(asdict(epoch.metrics), epoch.state)


def _maybe_inject_fault(epoch: int | None, resumed: bool) -> None:
    """Tests only: $SWEEP_INJECT_FAULT = k > 0: the worker process dies (SIGKILL) once, right
    after reporting epoch k. k < 0: it dies after epoch |k| and again at the start of every
    retry, so the trial ends failed."""
    setting = int(os.environ.get(FAULT_ENV, "0") or 0)
    die_after = not resumed and epoch == abs(setting)
    die_on_retry = setting < 0 and resumed and epoch is None
    if setting and (die_after or die_on_retry):
        os.kill(os.getpid(), signal.SIGKILL)


class TensorBoardLogger(TBXLoggerCallback):
    """Ray's TensorBoard logger (event files in each trial folder, x axis = examples seen) with
    the curves under clear tags and the scientific keys in the HParams view."""

    def log_trial_result(self, iteration: int, trial: Any, result: dict[str, Any]) -> None:
        rest = {k: v for k, v in result.items() if k not in CURVE_TAGS}
        super().log_trial_result(iteration, trial, rest)  # ray/tune/<key>; opens the writer
        writer = self._trial_writer[trial]
        step = result.get("timesteps_total") or result.get("training_iteration")
        for key, tag in CURVE_TAGS.items():
            value = result.get(key)
            if isinstance(value, int | float) and not isinstance(value, bool):
                if math.isfinite(value):
                    writer.add_scalar(tag, value, global_step=step)
                    self._trial_result[trial][tag] = value
        writer.flush()

    def _try_log_hparams(self, trial: Any, result: dict[str, Any]) -> None:
        from tensorboardX.summary import hparams

        params = {k: trial.config[k] for k in HPARAM_KEYS if k in trial.config}
        metrics = {
            tag: float(result[tag]) for tag in FINAL_METRIC_TAGS if tag in result
        }  # the last finite value of each curve
        try:
            for summary in hparams(hparam_dict=params, metric_dict=metrics):
                self._trial_writer[trial].file_writer.add_summary(summary)
        except Exception:  # noqa: BLE001 - as Ray's: a view lost is no reason to fail a trial
            logging.getLogger(__name__).exception("TensorBoard HParams not written")
