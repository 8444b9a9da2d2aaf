"""Checks before Ray starts that need more than the config: the data is there, and the user's
own code (`model`, `dataset`, `trainable` import paths) imports and works.

`check(cfg)` raises `ConfigError` (one line with the fix; the CLI exits with code 2):

- an experiment tracker in `loggers` whose package is not installed (`sweep.trackers`);
- a registered data set that would need a download;
- an import path whose module, attribute or callable is missing (`trainables.user_code`);
- a data set function that fails or returns something the loop cannot train on, or fewer
  training examples than the largest batch size;
- a model builder that fails, returns no `nn.Module`, or fails on a first batch (one forward
  and backward pass on the smallest batch size, on the CPU);
- `params` that no function of the user's takes as an argument (a typo would otherwise be
  silently ignored);
- a training function (`trainable`) that cannot be called with one argument. It is not run
  here: a whole training function has no tiny call. What only a trial can see (a metric never
  reported, an exception in epoch 3) fails that trial, with the user's traceback in its
  error.txt.

`runtime_env(cfg)` is what `ray.init` needs so that every worker, on every node, imports the
user's code: the folders (or files) of its top-level packages as Ray `py_modules`, unless they
are installed in the environment.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sweep.config import ConfigError, SweepConfig, check_batch_sizes
from trainables import user_code
from trainables.user_code import ImportPathError, is_import_path

MAX_SHIPPED_MIB = 100  # Ray uploads py_modules through its GCS (a gRPC message: 512 MiB)


def check(cfg: SweepConfig) -> None:
    """Raise ConfigError naming the first problem; import and call the user's code once."""
    from sweep.trackers import check_installed

    check_installed(cfg)  # `loggers: [mlflow]` without mlflow installed
    try:
        _check(cfg)
    except ImportPathError as err:
        raise ConfigError(str(err)) from None


def _check(cfg: SweepConfig) -> None:
    from trainables.data import DataUnavailable, check_available

    for where in map(Path, runtime_env(cfg).get("py_modules", [])):
        size = user_code.folder_size(where) / 2**20
        if size > MAX_SHIPPED_MIB:
            raise ConfigError(
                f"'{where}' holds {size:.0f} MiB, which Ray would upload to every node (the "
                f"limit here is {MAX_SHIPPED_MIB} MiB); keep data files out of the package "
                "folder (or list them in a .rayignore there), or install the package"
            )
    if cfg.trainable:
        fn = user_code.resolve("trainable", cfg.trainable)
        user_code.check_takes_one_argument("trainable", cfg.trainable, fn)
        return
    try:
        check_available(cfg.dataset, cfg.resolved_data_dir)
    except DataUnavailable as err:
        raise ConfigError(str(err)) from None
    own = [p for p in (cfg.model, cfg.dataset) if is_import_path(p)]
    if not own:
        _need(
            not cfg.params,
            f"params {sorted(cfg.params)}: nothing reads them: the registered model "
            f"'{cfg.model}' and data set '{cfg.dataset}' take no settings; params are for "
            "your own model, data set or trainable (import paths)",
        )
        return
    _check_params(cfg)
    _first_batch(cfg)


def _need(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def _check_params(cfg: SweepConfig) -> None:
    readers: dict[str, set[str]] = {}
    for key, path in (("model", cfg.model), ("dataset", cfg.dataset)):
        if is_import_path(path):
            readers[path] = user_code.accepted(user_code.resolve(key, path), cfg.params)
    unused = sorted(set(cfg.params) - set().union(*readers.values()))
    _need(
        not unused,
        f"params {unused} are not arguments of {' or '.join(readers)}; add them to the "
        "function's signature (e.g. `def build(in_shape, num_outputs, hidden=64)`) or remove "
        "them from params",
    )


def _first_batch(cfg: SweepConfig) -> None:
    """Load the data, build the model and run one step on the smallest batch, on the CPU."""
    import torch

    from trainables.data import load_dataset
    from trainables.models import get_model
    from trainables.tensor_data import BadData
    from trainables.train import loss_fn

    try:
        data = load_dataset(cfg.dataset, cfg.resolved_data_dir, "cpu", cfg.params)
    except (ImportPathError, BadData) as err:
        raise ConfigError(str(err)) from None
    except Exception as err:  # noqa: BLE001 - the user's loader failed: say so in one line
        raise ConfigError(f"dataset '{cfg.dataset}' failed: {user_code.one_line(err)}") from None
    n_train = min(cfg.n_train, data.n_train) if cfg.n_train > 0 else data.n_train
    check_batch_sizes(cfg, n_train)
    what = f"inputs of shape {data.in_shape} and {data.num_outputs} outputs"
    torch.manual_seed(cfg.seed)
    try:
        model = get_model(cfg.model, cfg.params)(data.in_shape, data.num_outputs)
    except ImportPathError:
        raise
    except Exception as err:  # noqa: BLE001
        raise ConfigError(
            f"model '{cfg.model}' cannot be built for {what}: {user_code.one_line(err)}"
        ) from None
    b = min(cfg.batch_sizes)
    x, y = data.x_train[:b], data.y_train[:b]
    try:
        out = model(x)
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else None
        expected = (b, data.num_outputs)
        if data.task == "classification" and shape != expected:
            raise ValueError(f"it returned {shape or type(out).__name__}, not {expected}")
        loss = loss_fn(data.task, out, y)
        loss.backward()
    except Exception as err:  # noqa: BLE001
        raise ConfigError(
            f"model '{cfg.model}' fails on a first batch of {b} examples of '{cfg.dataset}' "
            f"({what}): {user_code.one_line(err)}"
        ) from None
    loss = loss.detach()
    _need(
        bool(torch.isfinite(loss)),
        f"model '{cfg.model}' gives a {float(loss)} loss on a first batch of '{cfg.dataset}' "
        "before any training; check its initialisation and the data's scale",
    )


def runtime_env(cfg: SweepConfig) -> dict[str, Any]:
    """Ray's job-level runtime_env: the user's code for every worker ({} when none)."""
    modules = user_code.ray_modules([cfg.model, cfg.dataset, cfg.trainable])
    return {"py_modules": modules} if modules else {}
