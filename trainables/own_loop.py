"""The user's own training function as a trial: `trainable: "mypkg.train:run"` in the config.

For people who already have a training loop (their own DataLoader, augmentation, mixed
precision, any model). This module is the second adapter beside `trainables.train` (the
project's loop): the user's function *is* the loop, and this only drives it and completes what
it reports to the trial contract (`trainables.contract.EpochMetrics`). Ray stays in
`trainables.ray_adapter`, which hands `run_own` a `report(metrics, state)` function.

The function is called once per trial as `run(trial)` with a `Trial` (batch_size, lr,
warmup_epochs, seed, epochs, the user's `params`, device, and `resume`/`start_epoch` when the
trial continues from a checkpoint), and then either

- yields once per epoch a metrics dict, or `(metrics, state)` where `state` lets the trial
  resume (tensors, numbers, strings, None and lists/tuples/dicts of them, as
  `torch.load(weights_only=True)` reads them: `model.state_dict()` and the like), or
- calls `trial.report(metrics, state=None)` once per epoch.

Each epoch's metrics must hold the sweep's metric (`val_loss` or `val_acc`). The rest of the
contract is filled in here: `epoch` (counted), `examples_seen`, `step` and `timesteps_total`
(TensorBoard's axis; from a reported `examples_seen` or `step`, or from `WarmupSchedule`'s
steps per epoch; without any of them the axis is the epoch), `lr_now`, `train_time_s` (time
inside the function), `diverged` (a reported loss or the metric is NaN/inf, the train loss (else
the validation loss) exceeds `diverge_factor` x the first epoch's, or the function says
`diverged: True`), `steps_to_target`, and NaN for what is missing. The trial stops after
`epochs` epochs or at a diverged epoch (a generator is closed there; `trial.report` does not
return). The function seeds nothing it does not own, but torch, NumPy and `random` are seeded
with `trial.seed` before it is called.

A function that breaks these rules (a metric missing, fewer epochs than the budget, a state
that cannot be reloaded) fails its trial with `TrialError`, whose message says what to change;
any exception of the user's own ends the trial with the user's traceback in its error.txt.

`WarmupSchedule(optimizer, trial, steps_per_epoch)` gives the user's optimizer the same
per-step gradual warmup (Goyal et al. 2017) and post-warmup schedule as the project's loop.
"""

from __future__ import annotations

import functools
import inspect
import io
import math
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from trainables import user_code
from trainables.contract import TrainConfig, reached
from trainables.schedule import lr_at, warmup_steps_for

# result keys Ray Tune or the adapter set themselves: a user metric of that name would clash
RESERVED_KEYS = (
    "done",
    "config",
    "trial_id",
    "training_iteration",
    "should_checkpoint",
    "checkpoint_dir_name",
    "time_total_s",
    "node_id",
    "hostname",
    "timesteps_total",
    "train_time_s",
    "steps_to_target",
)
Sink = Callable[[dict[str, Any], dict[str, Any] | None], None]  # report(metrics, state)


class TrialError(RuntimeError):
    """The user's function broke the trial protocol; the message says what to change."""


class _Stop(BaseException):  # noqa: N818 - a control-flow signal, not an error
    """The trial is over (budget reached or diverged). A BaseException, so that a user's
    `except Exception` around `trial.report` does not swallow it."""


@dataclass
class _Context:
    """What helpers learn during the trial (WarmupSchedule's steps per epoch)."""

    steps_per_epoch: int | None = None
    report: Callable[[Any, Any], None] | None = None


@dataclass(frozen=True, kw_only=True)
class Trial:
    """What the user's training function receives: one configuration of the sweep."""

    batch_size: int
    lr: float  # peak learning rate, per optimizer step
    warmup_epochs: float  # gradual linear warmup, in epochs (0 = none); see WarmupSchedule
    seed: int
    epochs: int  # train this many epochs, reporting after each
    phase: str  # grid | optuna | confirm
    params: dict[str, Any]  # the sweep config's `params:` (the user's fixed hyperparameters)
    optimizer: str = "sgd"  # the config's optimizer, momentum, weight decay and schedule:
    momentum: float = 0.0  # yours to use; the report reads optimizer and momentum
    weight_decay: float = 0.0
    schedule: str = "constant"  # after warmup (WarmupSchedule follows it)
    data_dir: str = ""
    device: str = "cpu"  # "cuda" when Ray gave the trial a GPU
    resume: dict[str, Any] | None = None  # the last state yielded, when the trial continues
    start_epoch: int = 0  # epochs already done: continue with epoch start_epoch + 1
    _context: _Context = field(default_factory=_Context, repr=False, compare=False)

    def report(self, metrics: Mapping[str, Any], state: dict[str, Any] | None = None) -> None:
        """Report one epoch (instead of yielding it). Does not return once the trial is over."""
        if self._context.report is None:
            raise TrialError("trial.report works only inside a trial the sweep runs")
        self._context.report(metrics, state)

    def lr_at(self, step: int, steps_per_epoch: int) -> float:
        """The lr of optimizer step `step` (0-based, counted over the whole trial): the
        project loop's warmup ramp and schedule (trainables.schedule.lr_at)."""
        warmup = warmup_steps_for(self.warmup_epochs, steps_per_epoch)
        return lr_at(step, self.lr, warmup, steps_per_epoch * self.epochs, self.schedule)


class WarmupSchedule:
    """Gradual warmup for the user's optimizer, per step, as the project's loop does it: the lr
    ramps linearly from lr/warmup_steps to the trial's peak lr over `warmup_epochs`, then
    follows `schedule`. Create it after loading the optimizer's state when resuming (it starts
    at the trial's `start_epoch`), and call `.step()` after every `optimizer.step()`:

        sched = WarmupSchedule(opt, trial, steps_per_epoch=len(loader))
        for x, y in loader:
            ...; opt.step(); sched.step()
    """

    def __init__(
        self, optimizer: torch.optim.Optimizer, trial: Trial, steps_per_epoch: int
    ) -> None:
        if steps_per_epoch < 1:
            raise ValueError(f"steps_per_epoch must be >= 1, got {steps_per_epoch}")
        self.optimizer, self.trial, self.steps_per_epoch = optimizer, trial, steps_per_epoch
        self.step_count = trial.start_epoch * steps_per_epoch  # optimizer steps done
        trial._context.steps_per_epoch = steps_per_epoch
        self._apply()

    def step(self) -> None:
        self.step_count += 1
        self._apply()

    def get_last_lr(self) -> list[float]:
        return [self.lr] * len(self.optimizer.param_groups)

    def state_dict(self) -> dict[str, int]:
        return {"step_count": self.step_count}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.step_count = int(state["step_count"])
        self._apply()

    def _apply(self) -> None:
        self.lr = self.trial.lr_at(self.step_count, self.steps_per_epoch)
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr


@dataclass
class OwnProgress:
    """The wrapper's counters, checkpointed beside the user's state."""

    epoch: int = 0  # epochs reported
    first_loss: float = math.nan  # reference for divergence
    train_time_s: float = 0.0
    steps_to_target: float = math.nan


def run_own(cfg: TrainConfig, device: str, resume: dict[str, Any] | None, report: Sink) -> None:
    """Run the user's function for one trial; `report(metrics, state)` gets every epoch
    (state: what to checkpoint, None when the function yielded none). `resume`: the last
    checkpointed state, which `report` received."""
    fn = user_code.resolve("trainable", cfg.trainable)
    progress = OwnProgress(**resume["own"]) if resume else OwnProgress()
    if progress.epoch >= cfg.epochs:
        return
    trial = Trial(
        batch_size=cfg.batch_size,
        lr=cfg.lr,
        warmup_epochs=cfg.warmup_epochs,
        seed=cfg.seed,
        epochs=cfg.epochs,
        phase=cfg.phase,
        params=dict(cfg.params),
        optimizer=cfg.optimizer,
        momentum=cfg.momentum,
        weight_decay=cfg.weight_decay,
        schedule=cfg.schedule,
        data_dir=cfg.data_dir,
        device=device,
        resume=resume["user"] if resume else None,
        start_epoch=progress.epoch,
    )
    driver = _Driver(cfg, trial, progress, report)
    trial._context.report = driver.epoch
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed % 2**32)
    random.seed(cfg.seed)
    try:
        out = fn(trial)
        if inspect.isgenerator(out):
            try:
                for item in out:
                    driver.epoch(*_split(item, progress.epoch + 1))
            except _Stop:
                out.close()
                return
    except _Stop:
        return
    if progress.epoch < cfg.epochs:
        raise TrialError(
            f"trainable '{cfg.trainable}' ended after epoch {progress.epoch} of {cfg.epochs}: "
            f"report every epoch up to trial.epochs ({cfg.epochs}), starting at "
            "trial.start_epoch + 1"
        )


def _split(item: Any, epoch: int) -> tuple[Any, Any]:
    if isinstance(item, Mapping):
        return item, None
    if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], Mapping):
        return item
    raise TrialError(
        f"epoch {epoch}: the training function yielded a {type(item).__name__}; yield a dict "
        "of metrics, or (metrics, state)"
    )


class _Driver:
    """Completes each epoch's metrics to the contract and decides when the trial ends."""

    def __init__(self, cfg: TrainConfig, trial: Trial, progress: OwnProgress, sink: Sink):
        self.cfg, self.trial, self.progress, self.sink = cfg, trial, progress, sink
        self.checked_state = False
        self.clock = time.perf_counter()

    def epoch(self, metrics: Any, state: Any = None) -> None:
        self.progress.train_time_s += time.perf_counter() - self.clock
        p = self.progress
        if p.epoch >= self.cfg.epochs:
            raise _Stop  # reports past the budget end the trial (nothing recorded)
        row = self._complete(metrics)
        saved = None
        if state is not None:
            if not isinstance(state, dict):
                raise TrialError(
                    f"epoch {p.epoch}: the state must be a dict (e.g. {{'model': "
                    f"model.state_dict(), ...}}), got {type(state).__name__}"
                )
            saved = {"own": asdict(p), "user": state}
            if not self.checked_state:
                _check_reloadable(saved, p.epoch)
                self.checked_state = True
        self.sink(row, saved)
        self.clock = time.perf_counter()
        if row["diverged"] or p.epoch >= self.cfg.epochs:
            raise _Stop

    def _complete(self, metrics: Any) -> dict[str, Any]:
        cfg, p = self.cfg, self.progress
        epoch = p.epoch + 1
        if not isinstance(metrics, Mapping):
            raise TrialError(
                f"epoch {epoch}: metrics must be a dict, got {type(metrics).__name__}"
            )
        user = {str(k): _scalar(k, v, epoch) for k, v in metrics.items()}
        clash = sorted(set(user) & set(RESERVED_KEYS))
        if clash:
            raise TrialError(
                f"epoch {epoch}: metric name(s) {clash} are set by the sweep or Ray Tune; "
                "rename them"
            )
        if "epoch" in user and user["epoch"] != epoch:
            raise TrialError(
                f"the training function reported epoch {user['epoch']} where the trial is at "
                f"epoch {epoch}: when trial.resume is given, continue from "
                "trial.start_epoch + 1"
            )
        value = user.get(cfg.metric)
        if value is None or isinstance(value, bool | str):
            raise TrialError(
                f"epoch {epoch}: the metrics lack '{cfg.metric}', the sweep's metric (got "
                f"{sorted(user) or 'nothing'}); report it every epoch, or set `metric:` to "
                "one that is reported"
            )
        num = functools.partial(_number, user, epoch)
        b, spe = cfg.batch_size, self.trial._context.steps_per_epoch
        if "examples_seen" in user:
            examples = num("examples_seen")
        elif "step" in user:
            examples = num("step") * b
        else:
            examples = float(epoch * spe * b) if spe else math.nan
        step = num("step") if "step" in user else examples / b
        if "lr_now" in user:
            lr_now = num("lr_now")
        else:
            lr_now = self.trial.lr_at(epoch * spe - 1, spe) if spe else math.nan
        losses = [num(k) for k in ("train_loss", "val_loss", cfg.metric) if k in user]
        diverged = bool(user.get("diverged", False)) or not all(map(math.isfinite, losses))
        reference = num("train_loss") if "train_loss" in user else num("val_loss")
        if math.isnan(p.first_loss) and math.isfinite(reference):
            p.first_loss = reference
        factor = cfg.diverge_factor
        if factor > 0 and reference > factor * max(p.first_loss, 1e-12):
            diverged = True
        target = cfg.target_metric
        if (
            target
            and math.isnan(p.steps_to_target)
            and target in user
            and reached(target, num(target), cfg.target_value)
        ):
            p.steps_to_target = step
        p.epoch = epoch
        row: dict[str, Any] = {
            "epoch": epoch,
            "examples_seen": _whole(examples),
            "step": _whole(step),
            "train_loss": num("train_loss"),
            "val_loss": num("val_loss"),
            "val_acc": num("val_acc"),
            "lr_now": lr_now,
            "diverged": diverged,
            "train_time_s": p.train_time_s,
            "noise_scale": num("noise_scale"),
            "steps_to_target": p.steps_to_target,
        }
        if math.isfinite(examples):  # else Ray's TensorBoard logger plots against the epoch
            row["timesteps_total"] = int(examples)
        return {**row, **{k: v for k, v in user.items() if k not in row}}


def _whole(x: float) -> int | float:
    """A count as an int, as the project's loop reports it (NaN stays NaN: unknown)."""
    return int(x) if math.isfinite(x) and x == int(x) else x


def _number(user: dict[str, Any], epoch: int, key: str) -> float:
    """A reported number (NaN when not reported)."""
    value = user.get(key, math.nan)
    if isinstance(value, str):
        raise TrialError(f"epoch {epoch}: '{key}' is the text {value!r}; report a number")
    return float(value)


def _scalar(key: Any, value: Any, epoch: int) -> Any:
    """A reported value as a plain Python scalar (tensors and NumPy numbers converted)."""
    if not isinstance(key, str):
        raise TrialError(f"epoch {epoch}: metric names must be strings, got {key!r}")
    if isinstance(value, torch.Tensor):
        if value.numel() == 1:
            return value.item()
    elif isinstance(value, np.ndarray | np.generic):
        if value.size == 1:
            return value.item()
    elif value is None or isinstance(value, bool | int | float | str):
        return math.nan if value is None else value
    raise TrialError(
        f"epoch {epoch}: metric '{key}' is a {type(value).__name__}; report numbers "
        "(a float, or a one-element tensor)"
    )


def _check_reloadable(saved: dict[str, Any], epoch: int) -> None:
    """The state must come back through torch.load(weights_only=True): fail at the first
    epoch rather than when a crashed trial tries to resume."""
    buffer = io.BytesIO()
    try:
        torch.save(saved, buffer)
        buffer.seek(0)
        torch.load(buffer, weights_only=True)
    except Exception as err:  # noqa: BLE001 - whatever torch refuses, said in one line
        reason = " ".join(str(err).split())[:200]
        raise TrialError(
            f"epoch {epoch}: the state cannot be checkpointed and reloaded safely "
            f"({type(err).__name__}: {reason}); yield tensors, numbers, strings and "
            "lists/dicts of them, e.g. model.state_dict() (NumPy arrays: torch.as_tensor)"
        ) from None
