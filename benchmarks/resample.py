"""Bootstrap intervals for the benchmarks' summary figures: the units that are independent (a
seed, a sweep) are resampled whole, so that what one unit's trials share is not counted as
independent evidence."""

from __future__ import annotations

import numpy as np

BOOT_REPS = 2000  # resamples per interval
MIN_UNITS = 5  # fewer units than this: no interval


def resamples(n_units: int, seed: int = 0) -> np.ndarray | None:
    """BOOT_REPS rows of `n_units` unit indices drawn with replacement; None with fewer than
    MIN_UNITS units."""
    if n_units < MIN_UNITS:
        return None
    return np.random.default_rng(seed).integers(0, n_units, size=(BOOT_REPS, n_units))


def percentile_interval(values: np.ndarray, level: float = 0.9) -> tuple[float, float]:
    """The central `level` interval of the resampled statistic's values."""
    tail = (1 - level) / 2
    return float(np.quantile(values, tail)), float(np.quantile(values, 1 - tail))
