"""A data set as tensors on one device: what `trainables.train.train` trains and validates on."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class TensorData:
    x_train: torch.Tensor  # N x C x H x W, float32, normalised
    y_train: torch.Tensor  # class indices (int64), or regression targets (float32)
    x_val: torch.Tensor
    y_val: torch.Tensor
    num_outputs: int  # classes, or regression targets
    task: str = "classification"  # or "regression" (MSE loss, no accuracy)

    @property
    def in_shape(self) -> tuple[int, int, int]:
        c, h, w = self.x_train.shape[1:]
        return int(c), int(h), int(w)

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
