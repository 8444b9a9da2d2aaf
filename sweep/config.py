"""The sweep's typed, validated configuration: YAML file + `--set` overrides -> SweepConfig.

Every problem is a `ConfigError` whose message names the key or value and the fix; the CLI
prints it as one line and exits with code 2 before anything starts. This module imports
nothing of the user's: `model`, `dataset` and `trainable` import paths are checked here only
for their form; `sweep.preflight` imports and calls them.
"""

from __future__ import annotations

import difflib
import json
import math
import re
import types
import typing
from dataclasses import MISSING, dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from trainables.contract import (
    DEFAULT_DATA_DIR,
    MODELS,
    OPTIMIZERS,
    PARAM_KEYS,
    TARGET_METRICS,
    TRIAL_KEYS,
    Recipe,
    maximize,
)
from trainables.data import DATASETS
from trainables.schedule import SCHEDULES
from trainables.user_code import ImportPathError, check_syntax, is_import_path

SAMPLERS = ("tpe", "gp", "qmc")  # sweep.studies.make_sampler
METRICS = ("val_loss", "val_acc")  # what the Optuna studies and the confirmation rank by
DESIGNS = ("fixed", "adaptive")  # sweep.search: a budget per batch size | sweep.design's loop
LOGGERS = ("mlflow", "wandb")  # opt-in experiment trackers (sweep.trackers)
MAX_CONFIG_BYTES = 1 << 20  # a sweep config is a page of YAML
MAX_CONFIG_VALUES = 10_000  # values in a config once YAML aliases are expanded
MAX_INT = 2**53  # integers beyond this are typos (and lose precision as JSON numbers)
MAX_NAME_CHARS = 100  # the name is a folder (plus '.old-<time>'), a run and study prefix
MAX_GRID_TRIALS = 100_000
MAX_LR_LOG10 = 300  # every lr the sweep may try stays inside floating point's range


class ConfigError(ValueError):
    """Bad input: one line that names the problem and the fix."""


# ---------------------------------------------------------------- YAML


class _DuplicateKey(yaml.YAMLError):
    def __init__(self, key: Any, line: int) -> None:
        super().__init__(f"duplicate key {key!r}")
        self.key, self.line = key, line


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, with two changes: numbers such as 1e-3 are floats (YAML 1.2;
    YAML 1.1 wants a dot, `1.0e-3`, and reads `1e-3` as text), and a key repeated in one
    mapping is an error instead of the last one silently winning (merge keys `<<` may still
    override)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                if key in seen:
                    raise _DuplicateKey(key, key_node.start_mark.line + 1)
                seen.add(key)
            except TypeError:  # an unhashable key: PyYAML's own error follows
                break
        return super().construct_mapping(node, deep)


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def _count_values(value: Any, budget: int) -> int:
    """Values in `value` with aliases expanded, counting down from `budget`; stops (returning a
    negative number) as soon as it is spent, so an alias bomb costs nothing."""
    budget -= 1
    if isinstance(value, dict):
        items = [*value.keys(), *value.values()]
    elif isinstance(value, list):
        items = value
    else:
        return budget
    for item in items:
        budget = _count_values(item, budget)
        if budget < 0:
            break
    return budget


def parse_yaml(text: str, what: str) -> Any:
    """One YAML document -> plain values; ConfigError naming `what` and the fix otherwise."""
    try:
        value = yaml.load(text, Loader=_Loader)  # a SafeLoader: plain values only
    except _DuplicateKey as dup:
        raise ConfigError(
            f"{what} repeats the key '{dup.key}' (line {dup.line}); keep one of them"
        ) from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{what} is not valid YAML{at}: fix its syntax") from None
    except (RecursionError, ValueError):  # nesting thousands deep, a number of 5,000 digits
        raise ConfigError(
            f"{what} nests too deeply or holds a number too long to be a setting; fix it"
        ) from None
    if _count_values(value, MAX_CONFIG_VALUES) < 0:
        raise ConfigError(
            f"{what} holds more than {MAX_CONFIG_VALUES:,} values once its YAML aliases "
            "(*name) are expanded; write the values out, or use fewer aliases"
        )
    return value


@dataclass(frozen=True)
class GridConfig:
    base_batch_size: int = 8
    base_lr: float = 0.001  # peak lr at base_batch_size; lr = base_lr * B / base_batch_size * m
    lr_multipliers: list[float] = field(default_factory=lambda: [1.0])
    warmup_epochs: list[float] = field(default_factory=lambda: [0.0, 1.0])


@dataclass(frozen=True)
class OptunaConfig:
    trials_per_batch_size: int = 0  # 0 = no Optuna phase
    lr_range_decades: float = 2.0  # searched lr: linear-rule lr x 10^[-D, +D]
    warmup_epochs: list[float] = field(default_factory=lambda: [0.0, 1.0])
    sampler: str = "tpe"
    seed: int | None = None  # None: derived from the sweep's seed
    max_widenings: int = 2  # times a range may grow when its best lr sits at an edge
    widen_decades: float = 1.0


@dataclass(frozen=True)
class BudgetConfig:
    """What an adaptive sweep may spend before it stops undecided (either limit ends it)."""

    trials: int | None = None  # adaptive trials (the grid's and the measurements' not counted)
    minutes: float | None = None  # wall-clock minutes of one run of the sweep


@dataclass(frozen=True)
class AdaptiveConfig:
    """The design loop (`design: adaptive`, sweep.design): where its trials may go."""

    batch_sizes: list[int] = field(default_factory=list)  # empty: the sweep's batch_sizes
    batch_sizes_max: int | None = None  # undecided with every batch size located: double the
    # largest one, up to this (null: never add a batch size)
    replicates: int = 100  # simulated sweeps that calibrate the stopping check
    pin_trials: int = 8  # once the verdict is decided, this many trials per batch size near its
    # optimum for the per-batch table's best lr (the verdict does not use them; 0: none)


@dataclass(frozen=True)
class ConfirmConfig:
    top_k: int = 0  # best lrs per batch size re-run ...
    seeds: int = 0  # ... with this many new seeds each


@dataclass(frozen=True)
class TargetConfig:
    """Steps-to-target (Shallue et al. 2018): trials report the first step count, at epoch
    granularity, at which `metric` reached `value` (an accuracy from below, a loss from above)."""

    metric: str = "val_acc"  # val_acc | val_loss | train_loss
    value: float = 0.97


@dataclass(frozen=True)
class ResourcesConfig:
    cpu_per_trial: float = 1.0
    gpu_per_trial: float | str = "auto"  # fraction of a GPU, or auto (chosen from batch size)
    # auto: the GPU fraction of a trial whose batch size is at most the key
    gpu_fraction_by_batch: dict[int, float] = field(
        default_factory=lambda: {64: 0.0625, 512: 0.125, 4096: 0.25}
    )
    max_concurrent_trials: int = 0  # 0 = as many as the resources allow


@dataclass(frozen=True, kw_only=True)
class SweepConfig(Recipe):
    """The YAML config: the training recipe every trial shares (`Recipe`'s keys: epochs,
    dataset, model, optimizer, ..., with the same defaults) and how the sweep searches."""

    name: str = "default"
    seeds: int = 1  # seeds per grid configuration
    seed: int = 0  # one seed for the whole sweep: grid seeds, sampler seeds, trial seeds
    batch_sizes: list[int] = field(default_factory=lambda: [8, 16, 24, 32, 40, 48, 56])
    data_dir: str | None = None  # None: ~/.cache/lr-batch-sweep (or $SWEEP_DATA_DIR)
    metric: str = "val_loss"
    max_failures: int = 2  # retries of a crashed trial, from its last checkpoint
    checkpoints_to_keep: int = 2
    target: TargetConfig | None = None  # steps-to-target, e.g. {metric: val_acc, value: 0.97}
    grid: GridConfig = field(default_factory=GridConfig)
    optuna: OptunaConfig = field(default_factory=OptunaConfig)
    confirm: ConfirmConfig = field(default_factory=ConfirmConfig)
    design: str = "fixed"  # fixed: optuna.trials_per_batch_size per batch size | adaptive
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    adaptive: AdaptiveConfig = field(default_factory=AdaptiveConfig)
    resources: ResourcesConfig = field(default_factory=ResourcesConfig)
    loggers: list[str] = field(default_factory=list)  # trackers besides TensorBoard: LOGGERS

    @property
    def resolved_data_dir(self) -> str:
        return str(
            Path(self.data_dir).expanduser().resolve() if self.data_dir else DEFAULT_DATA_DIR
        )

    @property
    def mode(self) -> str:
        return "max" if maximize(self.metric) else "min"

    @property
    def search_batch_sizes(self) -> list[int]:
        """The batch sizes the Optuna phase searches (the adaptive design's own list, if set)."""
        if self.design == "adaptive" and self.adaptive.batch_sizes:
            return list(self.adaptive.batch_sizes)
        return list(self.batch_sizes)

    @property
    def all_batch_sizes(self) -> list[int]:
        """Every batch size a trial of this sweep may use (added ones included)."""
        sizes = set(self.batch_sizes) | set(self.search_batch_sizes)
        top, limit = max(self.search_batch_sizes), self.adaptive.batch_sizes_max
        while self.design == "adaptive" and limit is not None and top * 2 <= limit:
            top *= 2
            sizes.add(top)
        return sorted(sizes)


def budget_text(cfg: SweepConfig) -> str:
    """'at most 150 trials or 11 minutes': an adaptive sweep's budget, in words."""
    b = cfg.budget
    parts = ([f"{b.trials} trials"] if b.trials else []) + (
        [f"{b.minutes:g} minutes"] if b.minutes else []
    )
    return "at most " + " or ".join(parts)


# ---------------------------------------------------------------- building from dicts


def _suggest(key: str, valid: list[str], prefix: str = "") -> str:
    close = difflib.get_close_matches(key, valid, n=1)
    if close:
        return f"did you mean '{prefix}{close[0]}'?"
    return f"valid keys: {', '.join(prefix + v for v in valid)}"


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """Check `value` against the field's type hint; ints widen to floats, nothing else."""
    if hint is Any:  # the user's own values (`params`): checked by _validate_params
        return value
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(value, option, where)
            except ConfigError:
                continue
        names = " or ".join(
            "null" if o is type(None) else getattr(o, "__name__", str(o)) for o in options
        )
        raise ConfigError(f"{where} must be {names}, got {value!r}")
    if origin is list:
        (item,) = typing.get_args(hint)
        if not isinstance(value, list):
            value = [value]  # `--set batch_sizes=8` means [8]
        return [_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        key_t, val_t = typing.get_args(hint)
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a mapping, got {value!r}")
        return {
            _coerce(k, key_t, f"{where} key"): _coerce(v, val_t, f"{where}.{k}")
            for k, v in value.items()
        }
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INT:
        digits = len(str(abs(value)))
        raise ConfigError(
            f"{where}: a number of {digits} digits is too large; fix the value in the YAML "
            "or --set"
        )
    if hint is float and isinstance(value, int | float) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise ConfigError(
                f"{where} must be a finite number, got {value}; fix the value in the YAML or --set"
            )
        return float(value)
    if hint is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if hint is str and isinstance(value, str):
        return value
    if hint is bool and isinstance(value, bool):
        return value
    raise ConfigError(
        f"{where} must be {getattr(hint, '__name__', hint)}, got {value!r}"
        f" ({type(value).__name__}); fix the value in the YAML or --set"
    )


def _optional_dataclass(hint: Any) -> type | None:
    """The dataclass of a `Section | None` hint, else None."""
    if typing.get_origin(hint) not in (typing.Union, types.UnionType):
        return None
    options = [o for o in typing.get_args(hint) if o is not type(None)]
    if len(options) == 1 and is_dataclass(options[0]) and len(typing.get_args(hint)) == 2:
        return options[0]
    return None


def _build(cls: type, raw: Any, prefix: str) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"'{prefix or 'config'}' must be a mapping of keys, got {raw!r}")
    hints = typing.get_type_hints(cls)
    valid = [f.name for f in fields(cls)]
    kwargs: dict[str, Any] = {}
    for key, value in raw.items():
        where = f"{prefix}{key}"
        if key not in valid:
            raise ConfigError(f"unknown config key '{where}': {_suggest(str(key), valid, prefix)}")
        hint = hints[key]
        optional = _optional_dataclass(hint)
        if is_dataclass(hint):
            kwargs[key] = _build(hint, value if value is not None else {}, f"{where}.")
        elif optional is not None:  # a section that may be null (off), e.g. `target`
            kwargs[key] = None if value is None else _build(optional, value, f"{where}.")
        else:
            kwargs[key] = _coerce(value, hint, where)
    for f in fields(cls):
        if f.name not in kwargs and f.default is MISSING and f.default_factory is MISSING:
            raise ConfigError(f"missing config key '{prefix}{f.name}'")
    return cls(**kwargs)


def set_dotted(raw: dict[str, Any], dotted: str) -> None:
    """Apply one `--set a.b=value` (value parsed as YAML) to a nested dict."""
    if "=" not in dotted:
        raise ConfigError(f"--set '{dotted}' must look like key=value, e.g. grid.base_lr=0.002")
    key, text = dotted.split("=", 1)
    value = parse_yaml(text, f"--set {key}: '{text}'") if text.strip() else None
    parts = key.strip().split(".")
    node = raw
    for part in parts[:-1]:
        if node.get(part) is None:  # absent, or a null section (`target: null`) being set
            node[part] = {}
        node = node[part]
        if not isinstance(node, dict):
            raise ConfigError(f"--set {key}: '{part}' is not a section")
    node[parts[-1]] = value


def load_raw(path: str | Path) -> dict[str, Any]:
    """The mapping a YAML config file holds; ConfigError for anything else (a missing, empty,
    binary, huge or unparsable file, a repeated key, an alias bomb)."""
    path = Path(path)
    fix = "pass --config with a YAML file, e.g. sweep/configs/default.yaml"
    if not path.exists():
        raise ConfigError(f"config file '{path}' does not exist; {fix}")
    if not path.is_file():
        raise ConfigError(f"config file '{path}' is not a regular file; {fix}")
    try:
        with path.open("rb") as f:
            data = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as err:
        raise ConfigError(f"config file '{path}' cannot be read ({err.strerror}); {fix}") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"config file '{path}' is larger than 1 MiB, not a sweep config; {fix}")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"config file '{path}' is not a text file (UTF-8); {fix}") from None
    raw = parse_yaml(text, f"config file '{path}'")
    if raw is None:
        raise ConfigError(
            f"config file '{path}' is empty; write the keys to change (e.g. `name: mine`), "
            "or pass --config sweep/configs/default.yaml for the default sweep"
        )
    if not isinstance(raw, dict):
        raise ConfigError(f"config file '{path}' must hold a mapping of keys, not {raw!r:.80}")
    return raw


def load_config(path: str | Path, overrides: list[str] = ()) -> SweepConfig:  # type: ignore[assignment]
    raw = load_raw(path)
    for dotted in overrides:
        set_dotted(raw, dotted)
    cfg = _build(SweepConfig, raw, "")
    validate(cfg)
    return cfg


def with_overrides(cfg: SweepConfig, **changes: Any) -> SweepConfig:
    out = replace(cfg, **changes)
    validate(out)
    return out


# ---------------------------------------------------------------- value checks


def _need(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def _choice(key: str, value: str, choices: typing.Iterable[str]) -> None:
    choices = list(choices)
    if value not in choices:
        close = difflib.get_close_matches(value, choices, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ConfigError(f"unknown {key} '{value}'{hint}; choose from {', '.join(choices)}")


def _registered_or_path(key: str, value: str, choices: typing.Iterable[str]) -> None:
    if is_import_path(value):
        try:
            check_syntax(key, value)
        except ImportPathError as err:
            raise ConfigError(str(err)) from None
    else:
        _choice(key, value, [*choices, "pkg.module:function"])


def validate(cfg: SweepConfig) -> None:
    _registered_or_path("dataset", cfg.dataset, DATASETS)
    _registered_or_path("model", cfg.model, MODELS)
    if cfg.trainable:
        _validate_trainable(cfg)
    _validate_params(cfg.params)
    _choice("optimizer", cfg.optimizer, OPTIMIZERS)
    _choice("optuna.sampler", cfg.optuna.sampler, SAMPLERS)
    _choice("schedule", cfg.schedule, SCHEDULES)
    _choice("metric", cfg.metric, METRICS)
    _need(
        bool(cfg.name)
        and "/" not in cfg.name
        and not cfg.name.startswith(".")
        and cfg.name.isprintable(),
        f"name {cfg.name!r:.120} must be a plain folder name (no '/', no control characters, "
        "not starting with '.')",
    )
    _need(
        len(cfg.name) <= MAX_NAME_CHARS,
        f"name '{cfg.name[:40]}...' has {len(cfg.name)} characters; use at most "
        f"{MAX_NAME_CHARS} (it names the results folder and the Optuna studies)",
    )
    _need(cfg.epochs >= 1, f"epochs must be at least 1, got {cfg.epochs}")
    _need(cfg.seeds >= 1, f"seeds must be at least 1, got {cfg.seeds}")
    _need(len(cfg.batch_sizes) >= 1, "batch_sizes must list at least one batch size")
    _need(
        len(set(cfg.batch_sizes)) == len(cfg.batch_sizes),
        f"batch_sizes has duplicates: {cfg.batch_sizes}",
    )
    for b in cfg.batch_sizes:
        _need(b >= 1, f"batch_sizes: {b} is not a positive batch size; use integers >= 1")
    if cfg.dataset in DATASETS and not cfg.trainable:  # the user's: sweep.preflight loads it
        n_train = DATASETS[cfg.dataset].n_train
        n_train = min(n_train, cfg.n_train) if cfg.n_train > 0 else n_train
        check_batch_sizes(cfg, n_train)
    _need(cfg.n_train >= 0, f"n_train must be >= 0 (0 = all), got {cfg.n_train}")
    _need(0 <= cfg.momentum < 1, f"momentum must be in [0, 1), got {cfg.momentum}")
    _need(cfg.weight_decay >= 0, f"weight_decay must be >= 0, got {cfg.weight_decay}")
    _need(
        cfg.diverge_factor >= 0, f"diverge_factor must be >= 0 (0 = off), got {cfg.diverge_factor}"
    )
    _need(cfg.max_failures >= 0, f"max_failures must be >= 0, got {cfg.max_failures}")
    _need(
        cfg.checkpoints_to_keep >= 1,
        f"checkpoints_to_keep must be >= 1, got {cfg.checkpoints_to_keep}",
    )
    g = cfg.grid
    _need(g.base_lr > 0, f"grid.base_lr must be a positive learning rate, got {g.base_lr}")
    _need(g.base_batch_size >= 1, f"grid.base_batch_size must be >= 1, got {g.base_batch_size}")
    _need(
        len(g.lr_multipliers) >= 1 and all(m > 0 for m in g.lr_multipliers),
        f"grid.lr_multipliers must be positive numbers, got {g.lr_multipliers}",
    )
    for key, values in (
        ("grid.warmup_epochs", g.warmup_epochs),
        ("optuna.warmup_epochs", cfg.optuna.warmup_epochs),
    ):
        _need(len(values) >= 1, f"{key} must list at least one value (0 = no warmup)")
        for w in values:
            _need(w >= 0, f"{key}: {w} is negative; use 0 for no warmup")
            _need(
                w <= cfg.epochs,
                f"{key}: warmup of {w} epochs is longer than the "
                f"{cfg.epochs} training epochs; use at most {cfg.epochs}",
            )
    n_grid = len(cfg.batch_sizes) * len(g.lr_multipliers) * len(g.warmup_epochs) * cfg.seeds
    _need(
        n_grid <= MAX_GRID_TRIALS,
        f"the grid alone would run {n_grid:,} trials (batch_sizes x grid.lr_multipliers x "
        f"grid.warmup_epochs x seeds); use at most {MAX_GRID_TRIALS:,}",
    )
    o = cfg.optuna
    _need(
        o.trials_per_batch_size >= 0,
        f"optuna.trials_per_batch_size must be >= 0, got {o.trials_per_batch_size}",
    )
    _need(
        o.trials_per_batch_size * len(cfg.batch_sizes) <= MAX_GRID_TRIALS,
        f"optuna.trials_per_batch_size={o.trials_per_batch_size} x {len(cfg.batch_sizes)} "
        f"batch sizes is more than {MAX_GRID_TRIALS:,} trials; use fewer",
    )
    _need(
        o.lr_range_decades > 0,
        f"optuna.lr_range_decades must be positive, got {o.lr_range_decades}",
    )
    _need(o.max_widenings >= 0, f"optuna.max_widenings must be >= 0, got {o.max_widenings}")
    _need(o.widen_decades > 0, f"optuna.widen_decades must be positive, got {o.widen_decades}")
    _check_lr_range(cfg)
    _choice("design", cfg.design, DESIGNS)
    if cfg.design == "adaptive":
        _validate_adaptive(cfg)
    _need(
        cfg.confirm.top_k >= 0 and cfg.confirm.seeds >= 0,
        "confirm.top_k and confirm.seeds must be >= 0",
    )
    r = cfg.resources
    _need(r.cpu_per_trial > 0, f"resources.cpu_per_trial must be positive, got {r.cpu_per_trial}")
    if isinstance(r.gpu_per_trial, str):
        _need(
            r.gpu_per_trial == "auto",
            f"resources.gpu_per_trial must be 'auto' or a "
            f"fraction of a GPU, got '{r.gpu_per_trial}'",
        )
    else:
        _need(r.gpu_per_trial >= 0, f"resources.gpu_per_trial must be >= 0, got {r.gpu_per_trial}")
    _need(
        all(0 < f <= 1 for f in r.gpu_fraction_by_batch.values()),
        "resources.gpu_fraction_by_batch values must be fractions in (0, 1]",
    )
    _need(r.max_concurrent_trials >= 0, "resources.max_concurrent_trials must be >= 0")
    if cfg.target is not None:
        _validate_target(cfg.target)
    for name in cfg.loggers:
        _choice("loggers entry", name, LOGGERS)
    _need(len(set(cfg.loggers)) == len(cfg.loggers), f"loggers has duplicates: {cfg.loggers}")


def _validate_adaptive(cfg: SweepConfig) -> None:
    b, a = cfg.budget, cfg.adaptive
    _need(
        b.trials is not None or b.minutes is not None,
        "design: adaptive runs until its verdict is decided or its budget is spent; set "
        "budget: {trials: N} and/or budget: {minutes: M}",
    )
    _need(b.trials is None or b.trials >= 1, f"budget.trials must be >= 1, got {b.trials}")
    _need(
        b.trials is None or b.trials <= MAX_GRID_TRIALS,
        f"budget.trials={b.trials} is more than {MAX_GRID_TRIALS:,} trials; use fewer",
    )
    _need(
        b.minutes is None or 0 < b.minutes < 1e6,
        f"budget.minutes must be a positive number of minutes, got {b.minutes}",
    )
    _need(
        cfg.optuna.trials_per_batch_size == 0 and cfg.confirm.top_k == 0,
        "optuna.trials_per_batch_size and confirm.top_k belong to design: fixed; with design: "
        "adaptive the model places the trials until the budget is spent: set them to 0",
    )
    sizes = cfg.search_batch_sizes
    _need(len(sizes) >= 3, f"design: adaptive needs at least 3 batch sizes, got {sizes}")
    _need(len(set(sizes)) == len(sizes), f"adaptive.batch_sizes has duplicates: {sizes}")
    for s in sizes:
        _need(s >= 1, f"adaptive.batch_sizes: {s} is not a positive batch size")
    _need(
        a.batch_sizes_max is None or a.batch_sizes_max >= max(sizes),
        f"adaptive.batch_sizes_max {a.batch_sizes_max} is below the largest batch size "
        f"{max(sizes)}; raise it, or set it to null (never add a batch size)",
    )
    _need(a.replicates >= 20, f"adaptive.replicates must be >= 20, got {a.replicates}")
    _need(a.pin_trials >= 0, f"adaptive.pin_trials must be >= 0, got {a.pin_trials}")


def _check_lr_range(cfg: SweepConfig) -> None:
    """Every lr the grid and the Optuna studies (widened as far as allowed) may try must be a
    positive, finite float: lr = base_lr x B / base_batch_size x m, then x 10^+-decades."""
    g, o = cfg.grid, cfg.optuna
    logs = [
        math.log10(g.base_lr) + math.log10(b / g.base_batch_size) + math.log10(m)
        for b in cfg.batch_sizes
        for m in g.lr_multipliers
    ]
    extent = 0.0
    if o.trials_per_batch_size > 0:
        extent = o.lr_range_decades + o.max_widenings * o.widen_decades
    if cfg.design == "adaptive":  # its start range, and a couple of decades of bracketing
        extent = o.lr_range_decades + 2.0
    _need(
        max(logs) + extent <= MAX_LR_LOG10 and min(logs) - extent >= -MAX_LR_LOG10,
        f"the lrs this sweep may try reach 10^{max(logs) + extent:.0f} (lowest "
        f"10^{min(logs) - extent:.0f}), outside floating point's range; check grid.base_lr, "
        "grid.lr_multipliers, optuna.lr_range_decades, optuna.max_widenings and "
        "optuna.widen_decades (a few decades each way is a wide search)",
    )


def check_batch_sizes(cfg: SweepConfig, n_train: int) -> None:
    too_big = [b for b in cfg.all_batch_sizes if b > n_train]
    _need(
        not too_big,
        f"batch_sizes {too_big} exceed the {n_train} training examples of "
        f"'{cfg.dataset}'; use batch sizes <= {n_train}"
        + (" (adaptive.batch_sizes_max included)" if cfg.adaptive.batch_sizes_max else ""),
    )


# keys of the project's own loop, which a training function of the user's does not read
OWN_LOOP_ONLY = ("model", "dataset", "n_train", "cuda_graph", "measure_noise_scale")


def _validate_trainable(cfg: SweepConfig) -> None:
    try:
        check_syntax("trainable", cfg.trainable)
    except ImportPathError as err:
        raise ConfigError(str(err)) from None
    defaults = Recipe()
    for key in OWN_LOOP_ONLY:
        _need(
            getattr(cfg, key) == getattr(defaults, key),
            f"{key}: {getattr(cfg, key)!r} is a setting of the project's own training loop, "
            f"which trainable '{cfg.trainable}' replaces; remove it (your function builds its "
            "own model and data; pass your settings to it under params:)",
        )


def _validate_params(params: dict[str, Any]) -> None:
    for key in params:
        if key in TRIAL_KEYS or key == "epochs":
            raise ConfigError(
                f"params.{key}: '{key}' is set by the sweep for every trial (trial.{key}); "
                "remove it from params"
            )
        _need(
            key not in PARAM_KEYS,
            f"params.{key}: '{key}' is a key of the sweep itself; set it at the top level of "
            "the config (your function gets it as trial." + key + ")",
        )
    try:
        json.dumps(params, allow_nan=True)
    except (TypeError, ValueError) as err:
        raise ConfigError(
            f"params must hold plain values (numbers, text, true/false, lists, mappings) to go "
            f"into every trial's params.json: {err}; quote dates and other special values"
        ) from None


def _validate_target(t: TargetConfig) -> None:
    _choice("target.metric", t.metric, TARGET_METRICS)
    if maximize(t.metric):
        _need(
            0 < t.value <= 1,
            f"target.value {t.value} is not an accuracy in (0, 1]; e.g. "
            f"target: {{metric: {t.metric}, value: 0.97}}",
        )
    else:
        _need(
            t.value > 0,
            f"target.value {t.value} must be a positive loss for target.metric "
            f"{t.metric}; or use target: {{metric: val_acc, value: 0.97}}",
        )
