"""Which optimizer a sweep ran, and what that changes in the report.

- SGD with momentum m (`momentum`, `nesterov`): the report also states the effective learning
  rate lr / (1 - m) (Shallue et al. 2018 compare batch sizes by it). With m fixed across the
  sweep it is the lr times a constant, so the fitted exponent alpha is the same for both.
- Adam / AdamW: the report also tests the article's claim "no lr change needed" (alpha = 0) as
  a third fixed rule beside linear and sqrt (`analysis.inference.infer(..., constant=True)`,
  judged by `analysis.verdict.no_change_text`); the surge shape (best lr rises then falls, Li
  et al. 2024: the log-quadratic rule) is fitted for every optimizer.

The optimizer is read from the trials' params.json (`optimizer`, `momentum`), as
`trainables.train.make_optimizer` uses them (momentum 0 means 0.9 for momentum / nesterov).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from trainables.contract import ADAPTIVE_OPTIMIZERS, DEFAULT_MOMENTUM, MOMENTUM_OPTIMIZERS


@dataclass(frozen=True)
class OptimizerInfo:
    name: str  # sgd | momentum | nesterov | adam | adamw | ... | mixed | unknown
    momentum: float | None  # SGD momentum coefficient (None when not a momentum optimizer)

    @property
    def adaptive(self) -> bool:
        return self.name in ADAPTIVE_OPTIMIZERS

    @property
    def effective_factor(self) -> float | None:
        """Effective lr / lr: 1 / (1 - m) with momentum, 1 for plain SGD, None otherwise."""
        if self.momentum is not None:
            return 1.0 / (1.0 - self.momentum)
        return 1.0 if self.name == "sgd" else None

    def describe(self) -> str:
        if self.momentum is not None:
            return (
                f"SGD with {'Nesterov ' if self.name == 'nesterov' else ''}momentum "
                f"m = {self.momentum:g}"
            )
        return {"sgd": "plain SGD", "adam": "Adam", "adamw": "AdamW"}.get(self.name, self.name)


def optimizer_info(trials: pd.DataFrame) -> OptimizerInfo:
    """The sweep's optimizer from params.json ('mixed' when trials disagree)."""
    if "optimizer" not in trials.columns or trials["optimizer"].isna().all():
        return OptimizerInfo("unknown", None)
    names = sorted({str(v) for v in trials["optimizer"].dropna()})
    if len(names) > 1:
        return OptimizerInfo("mixed", None)
    name = names[0]
    if name not in MOMENTUM_OPTIMIZERS:
        return OptimizerInfo(name, None)
    values = pd.to_numeric(trials.get("momentum"), errors="coerce").dropna()
    m = float(values.median()) if len(values) else 0.0
    return OptimizerInfo(name, m if m > 0 else DEFAULT_MOMENTUM)


def optimizer_text(info: OptimizerInfo, best: pd.DataFrame) -> str:
    """The report's paragraph on the optimizer."""
    text = f"Optimizer (from params.json): {info.describe()}."
    if info.name == "mixed":
        return (
            text + " WARNING: the trials used different optimizers; their best lrs are "
            "mixed in one fit. Analyse each optimizer's sweep on its own "
            "(`python -m analysis.compare_optimizers` compares them)."
        )
    if info.momentum is not None:
        f = info.effective_factor
        lrs = [(int(r["batch_size"]), r["lr"]) for _, r in best.iterrows() if pd.notna(r["lr"])]
        listed = ", ".join(f"B={b}: {lr * f:.3g}" for b, lr in lrs)
        text += (
            f" Effective lr = lr / (1 - m) = {f:.3g} x lr (the step size in the long run "
            f"of momentum); best effective lrs: {listed or 'none located'}. With m fixed, "
            f"the exponent alpha is the same for the lr and the effective lr."
        )
    elif info.adaptive:
        text += (
            " Adam rescales every step by its own gradient statistics, so the folklore "
            "says its lr needs no change with the batch size (alpha = 0); theory says "
            "about sqrt (Malladi et al. 2022), with a possible fall past the noise scale "
            "(surge, Li et al. 2024). The constant rule is fitted beside linear and sqrt."
        )
    return text
