"""A data set as tensors on one device: what `trainables.train.train` trains and validates on.

A data set named by import path (`dataset: "pkg.module:load"`) returns one; `as_tensor_data`
also accepts a mapping or a tuple of its fields, as tensors or NumPy arrays, and checks them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch

TASKS = ("classification", "regression")


@dataclass(frozen=True)
class TensorData:
    x_train: torch.Tensor  # N x features... (images: N x C x H x W), float32, normalised
    y_train: torch.Tensor  # class indices (int64), or regression targets (float32)
    x_val: torch.Tensor
    y_val: torch.Tensor
    num_outputs: int  # classes, or regression targets
    task: str = "classification"  # or "regression" (MSE loss, no accuracy)

    @property
    def in_shape(self) -> tuple[int, ...]:
        """One example's shape: (C, H, W) for images, (features,) for a table."""
        return tuple(int(d) for d in self.x_train.shape[1:])

    @property
    def n_train(self) -> int:
        return int(self.x_train.shape[0])

    def to(self, device: torch.device) -> TensorData:
        return TensorData(
            self.x_train.to(device),
            self.y_train.to(device),
            self.x_val.to(device),
            self.y_val.to(device),
            self.num_outputs,
            self.task,
        )


FIELDS = tuple(f.name for f in fields(TensorData))


class BadData(ValueError):
    """What a data set function returned cannot be trained on; the message says why."""


def as_tensor_data(value: Any) -> TensorData:
    """A user's data set as TensorData: a TensorData, a mapping with its field names, or the
    tuple (x_train, y_train, x_val, y_val, num_outputs[, task]); arrays may be NumPy. Inputs
    become float32, classification labels int64 in [0, num_outputs), regression targets
    float32. Raises BadData naming the problem."""
    parts = _fields_of(value)
    task = parts.get("task", "classification")
    if task not in TASKS:
        raise BadData(f"task is {task!r}; use 'classification' or 'regression'")
    k = parts["num_outputs"]
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise BadData(f"num_outputs is {k!r}; give the number of classes (an int >= 1)")
    t = {name: _tensor(name, parts[name]) for name in FIELDS[:4]}
    for split in ("train", "val"):
        x, y = t[f"x_{split}"], t[f"y_{split}"]
        if x.ndim < 2 or x.shape[0] == 0 or x.dtype == torch.bool or x.is_complex():
            raise BadData(
                f"x_{split} has shape {tuple(x.shape)} ({x.dtype}); give real numbers, "
                "N examples x features (N > 0)"
            )
        if y.ndim == 0 or y.shape[0] != x.shape[0]:
            raise BadData(
                f"x_{split} holds {x.shape[0]} examples but y_{split} has shape {tuple(y.shape)}"
            )
        if task == "classification":
            if y.is_floating_point() or y.dtype == torch.bool or y.ndim != 1:
                raise BadData(
                    f"y_{split} must hold one class index (an integer) per example for "
                    f"classification, got {y.dtype} of shape {tuple(y.shape)}; or return "
                    "task='regression'"
                )
            if int(y.min()) < 0 or int(y.max()) >= k:
                raise BadData(
                    f"y_{split} holds classes {int(y.min())}..{int(y.max())}, outside "
                    f"0..{k - 1} (num_outputs={k})"
                )
    if t["x_train"].shape[1:] != t["x_val"].shape[1:]:
        raise BadData(
            f"x_train's examples have shape {tuple(t['x_train'].shape[1:])} but x_val's "
            f"{tuple(t['x_val'].shape[1:])}"
        )
    label = torch.long if task == "classification" else torch.float32
    return TensorData(
        t["x_train"].float(),
        t["y_train"].to(label),
        t["x_val"].float(),
        t["y_val"].to(label),
        int(k),
        task,
    )


def _fields_of(value: Any) -> dict[str, Any]:
    if isinstance(value, TensorData):
        return {f: getattr(value, f) for f in FIELDS}
    if isinstance(value, Mapping):
        missing = [f for f in FIELDS[:5] if f not in value]
        unknown = sorted(set(map(str, value)) - set(FIELDS))
        if missing or unknown:
            raise BadData(
                f"returned a dict without {missing} or with unknown keys {unknown}; its keys "
                f"must be {', '.join(FIELDS)} (task optional)"
            )
        return dict(value)
    if isinstance(value, Sequence) and not isinstance(value, str) and len(value) in (5, 6):
        return dict(zip(FIELDS, value, strict=False))
    raise BadData(
        f"returned {type(value).__name__}; return a TensorData, a dict with keys "
        f"{', '.join(FIELDS)} (task optional), or the tuple (x_train, y_train, x_val, y_val, "
        "num_outputs[, task])"
    )


def _tensor(name: str, value: Any) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.detach()
    try:
        return torch.as_tensor(np.asarray(value))
    except (TypeError, ValueError, RuntimeError) as err:
        raise BadData(
            f"{name} is not an array of numbers ({type(value).__name__}: {err})"
        ) from None
