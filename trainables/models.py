"""Model registry: name -> constructor taking the data set's input shape and class count.

`cnn1` is the article's CNN (one conv layer, dropout, one fully connected layer);
`resnet8` a small ResNet for CIFAR-10; `linear` a bias-free linear model for the regression
data sets whose best learning rate is known in closed form (tests).

A model may also be the user's own builder, named by import path (`model: "pkg.nets:build"`):
any callable `(in_shape, num_outputs) -> nn.Module`, which also gets the keywords it names
among the sweep's `params` (e.g. `def build(in_shape, num_outputs, hidden=64)`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from trainables import user_code


def cnn1(in_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    """conv 3x3 (32 ch) -> ReLU -> maxpool 2 -> dropout 0.25 -> fc to classes."""
    channels, height, width = in_shape
    flat = 32 * ((height - 2) // 2) * ((width - 2) // 2)  # 5408 on 28x28 MNIST
    return nn.Sequential(
        nn.Conv2d(channels, 32, kernel_size=3),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Dropout(0.25),
        nn.Flatten(),
        nn.Linear(flat, num_classes),
    )


class _Block(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.skip: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.skip = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.skip(x))


def resnet8(in_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    """ResNet-8 (stem + three basic blocks, 16/32/64 channels), as in Shallue et al."""
    channels = in_shape[0]
    return nn.Sequential(
        nn.Conv2d(channels, 16, 3, 1, 1, bias=False),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        _Block(16, 16, 1),
        _Block(16, 32, 2),
        _Block(32, 64, 2),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(64, num_classes),
    )


def linear(in_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    """Bias-free linear map, initialised at zero (regression data sets)."""
    layer = nn.Linear(in_shape[0] * in_shape[1] * in_shape[2], num_classes, bias=False)
    nn.init.zeros_(layer.weight)
    return nn.Sequential(nn.Flatten(), layer)


MODELS: dict[str, Callable[[tuple[int, int, int], int], nn.Module]] = {
    "cnn1": cnn1,
    "resnet8": resnet8,
    "linear": linear,
}


def get_model(
    name: str, params: Mapping[str, Any] | None = None
) -> Callable[[tuple[int, ...], int], nn.Module]:
    """The builder of a registered model, or of the user's (`params` bound to its keywords)."""
    if user_code.is_import_path(name):
        fn = user_code.resolve("model", name)
        return functools.partial(_build_user_model, name, fn, dict(params or {}))
    if name not in MODELS:
        raise ValueError(f"unknown model '{name}'; choose from {', '.join(MODELS)}")
    return MODELS[name]


def _build_user_model(
    path: str, fn: Callable[..., Any], params: dict[str, Any], in_shape: tuple, num_outputs: int
) -> nn.Module:
    model = user_code.call(fn, tuple(in_shape), num_outputs, offered=params)
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"model '{path}' returned {type(model).__name__}, not a torch.nn.Module; return "
            "the network, e.g. nn.Sequential(...)"
        )
    if not any(p.requires_grad for p in model.parameters()):
        raise TypeError(f"model '{path}' returned a module without trainable parameters")
    return model
