"""A two-layer perceptron: the sweep builds it as `build(in_shape, num_outputs, **params)`."""

from __future__ import annotations

import math

from torch import nn


def build(in_shape: tuple[int, ...], num_outputs: int, hidden: int = 64, dropout: float = 0.0):
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(math.prod(in_shape), hidden),
        nn.ReLU(),
        nn.Dropout(dropout),
        nn.Linear(hidden, num_outputs),
    )
