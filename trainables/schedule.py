"""Learning-rate schedules as pure functions of the optimizer step.

Gradual warmup follows Goyal et al. (2017): the lr ramps linearly, per step, up to the peak lr
over the first `warmup_steps` steps. Step 0 already trains (peak / warmup_steps), so no step is
spent at lr 0. After warmup the lr stays constant (`constant`) or follows a half cosine down to
0 at the last step (`cosine`).
"""

from __future__ import annotations

import math

SCHEDULES = ("constant", "cosine")


def lr_at(
    step: int, peak_lr: float, warmup_steps: int, total_steps: int, kind: str = "constant"
) -> float:
    """The lr to use for optimizer step `step` (0-based) of `total_steps`."""
    if kind not in SCHEDULES:
        raise ValueError(f"unknown schedule '{kind}'; choose from {', '.join(SCHEDULES)}")
    if warmup_steps > 0 and step < warmup_steps:
        return peak_lr * (step + 1) / warmup_steps
    if kind == "constant":
        return peak_lr
    decay_steps = max(total_steps - warmup_steps, 1)
    progress = min(max(step - warmup_steps, 0) / decay_steps, 1.0)
    return peak_lr * 0.5 * (1.0 + math.cos(math.pi * progress))


def warmup_steps_for(warmup_epochs: float, steps_per_epoch: int) -> int:
    """Warmup length in optimizer steps; the budget is given in epochs (examples)."""
    return int(round(warmup_epochs * steps_per_epoch))
