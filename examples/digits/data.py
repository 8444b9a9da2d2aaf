"""scikit-learn's bundled 8x8 digits (1,797 images, offline) as the sweep's data set.

The sweep calls `load()` once per worker process and trains on the tensors it returns: the
images as 64 standardised features, 1,437 for training and 360 held out (a fixed split).
"""

from __future__ import annotations

import numpy as np
from sklearn.datasets import load_digits


def load(val_fraction: float = 0.2) -> dict:
    x, y = load_digits(return_X_y=True)
    order = np.random.default_rng(0).permutation(len(y))
    x, y = x[order].astype(np.float32), y[order]
    n_val = int(round(val_fraction * len(y)))
    mean, std = x[n_val:].mean(0), x[n_val:].std(0) + 1e-6  # from the training part only
    x = (x - mean) / std
    return {
        "x_train": x[n_val:],
        "y_train": y[n_val:],
        "x_val": x[:n_val],
        "y_val": y[:n_val],
        "num_outputs": 10,
    }
