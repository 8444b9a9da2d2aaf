"""Where a sweep's curves go besides its trial folders: TensorBoard event files (always) and the
experiment trackers its config opts into (`loggers: [mlflow]`, `loggers: [mlflow, wandb]`), all
through Ray Tune's own logger callbacks, which run in the driver.

- TensorBoard: `trainables.ray_adapter.TensorBoardLogger`, Ray's logger with clear tags.
- `mlflow`: Ray's `MLflowLoggerCallback`: an MLflow experiment named after the sweep, one run
  per trial (named after its folder), the trial's params.json keys as parameters, its
  metrics per epoch at step = examples seen. Where to: `$MLFLOW_TRACKING_URI` when set (a
  server, `sqlite:///...`, a folder); otherwise a file store in the experiment folder,
  `<storage>/<name>/mlruns`, which sits on shared storage with the results (MLflow 3 keeps its
  file store in "maintenance mode" behind `MLFLOW_ALLOW_FILE_STORE=true`, which the sweep sets
  for it). Needs `pip install 'lr-batch-sweep[mlflow]'` (mlflow-skinny, or a full mlflow).
- `wandb`: Ray's `WandbLoggerCallback`, offline unless `WANDB_MODE` says otherwise (no account,
  nothing leaves the machine; `wandb sync <storage>/<name>/wandb/offline-run-*` uploads later):
  project = the sweep's name (`$WANDB_PROJECT` overrides), one run per trial. Needs
  `pip install 'lr-batch-sweep[wandb]'`.

`check_installed(cfg)` runs before Ray starts (a missing package: one line, exit 2);
`callbacks(cfg, exp_dir)` is what `sweep.runner` passes to Tune.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sweep.config import LOGGERS, ConfigError

if TYPE_CHECKING:
    from sweep.config import SweepConfig

MLFLOW_DIR = "mlruns"  # in the experiment folder, when MLFLOW_TRACKING_URI is unset
WANDB_DIR = "wandb"


def check_installed(cfg: SweepConfig) -> None:
    """ConfigError naming the extra to install when a tracker's package is missing."""
    for name in cfg.loggers:
        if importlib.util.find_spec(name) is None:
            raise ConfigError(
                f"loggers: '{name}' needs the {name} package, which is not installed; "
                f"pip install 'lr-batch-sweep[{name}]' (or remove {name} from loggers)"
            )


def mlflow_uri(exp_dir: Path) -> str:
    """$MLFLOW_TRACKING_URI, else a file store in the experiment folder."""
    return os.environ.get("MLFLOW_TRACKING_URI") or (exp_dir / MLFLOW_DIR).resolve().as_uri()


def callbacks(cfg: SweepConfig, exp_dir: Path) -> list[Any]:
    """Tune callbacks: the TensorBoard logger, then each tracker of `cfg.loggers`."""
    from trainables.ray_adapter import TensorBoardLogger

    out: list[Any] = [TensorBoardLogger()]
    assert set(cfg.loggers) <= set(LOGGERS)
    if "mlflow" in cfg.loggers:
        from ray.air.integrations.mlflow import MLflowLoggerCallback

        uri = mlflow_uri(exp_dir)
        if uri.startswith("file:"):
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        out.append(
            MLflowLoggerCallback(
                tracking_uri=uri,
                experiment_name=cfg.name,
                tags={"sweep": cfg.name, "dataset": cfg.dataset, "model": cfg.model},
            )
        )
    if "wandb" in cfg.loggers:
        from ray.air.integrations.wandb import WandbLoggerCallback

        mode = os.environ.setdefault("WANDB_MODE", "offline")
        (exp_dir / WANDB_DIR).mkdir(parents=True, exist_ok=True)
        out.append(WandbLoggerCallback(project=cfg.name, mode=mode, dir=str(exp_dir / WANDB_DIR)))
    return out
