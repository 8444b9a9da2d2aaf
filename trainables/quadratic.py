"""A regression problem whose best learning rate per batch size is known in closed form.

Linear regression with Gaussian inputs x ~ N(0, diag(h)) (curvatures h log-spaced), targets
y = x . w* + noise (std sigma), model w initialised at 0, loss 0.5 (x . w - y)^2. One epoch of
mini-batch SGD over fresh examples is online SGD, whose expected error second moments
m_i = E[(w - w*)_i^2] follow exactly (Gaussian fourth moments):

    m' = m (1 - lr h)^2 + lr^2 / B * h * (h m + sum_j h_j m_j + sigma^2)

and the expected validation loss is 0.5 sum_i h_i m_i + 0.5 sigma^2. `best_lr(B)` minimises it
numerically: the answer a sweep on the `quadratic` data set (model `linear`, 1 epoch) must find.
The optimum grows linearly with B at small batches and saturates near the stability limit at
large ones, as McCandlish et al. (2018) predict.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import minimize_scalar

from trainables.tensor_data import TensorData


@dataclass(frozen=True)
class QuadraticProblem:
    dims: int = 64
    log10_h_min: float = -1.5  # curvatures log-spaced in [10^min, 1]
    sigma: float = 1.0  # label noise std
    n_train: int = 8192
    n_val: int = 8192
    seed: int = 0

    def curvatures(self) -> np.ndarray:
        return np.logspace(self.log10_h_min, 0.0, self.dims)

    def w_star(self) -> np.ndarray:
        return np.random.default_rng(self.seed).normal(size=self.dims)


QUADRATIC = QuadraticProblem()


def make_data(p: QuadraticProblem) -> TensorData:
    g = torch.Generator().manual_seed(p.seed + 1)
    scale = torch.as_tensor(np.sqrt(p.curvatures()), dtype=torch.float32)
    w = torch.as_tensor(p.w_star(), dtype=torch.float32)

    def draw(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.randn(n, p.dims, generator=g) * scale
        y = x @ w + p.sigma * torch.randn(n, generator=g)
        return x.view(n, 1, 1, p.dims), y

    x_tr, y_tr = draw(p.n_train)
    x_va, y_va = draw(p.n_val)
    return TensorData(x_tr, y_tr, x_va, y_va, num_outputs=1, task="regression")


def expected_loss(
    lr: float, batch_size: int, p: QuadraticProblem = QUADRATIC, epochs: int = 1
) -> float:
    """Expected validation loss after `epochs` x floor(n_train / B) steps (exact online)."""
    h = p.curvatures()
    m = p.w_star() ** 2
    for _ in range(epochs * (p.n_train // batch_size)):
        m = m * (1 - lr * h) ** 2 + lr**2 / batch_size * h * (h * m + h @ m + p.sigma**2)
        if not np.isfinite(m).all() or m.sum() > 1e12:
            return math.inf
    return float(0.5 * h @ m + 0.5 * p.sigma**2)


def best_lr(batch_size: int, p: QuadraticProblem = QUADRATIC, epochs: int = 1) -> float:
    """The lr minimising the expected validation loss at this batch size."""
    grid = np.linspace(-4.0, 1.0, 51)
    losses = [expected_loss(10**g, batch_size, p, epochs) for g in grid]
    i = int(np.argmin(losses))
    lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]
    res = minimize_scalar(
        lambda g: expected_loss(10**g, batch_size, p, epochs),
        bounds=(lo, hi),
        method="bounded",
        options={"xatol": 1e-3},
    )
    return float(10**res.x)
