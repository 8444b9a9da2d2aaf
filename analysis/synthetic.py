"""Results folders generated from a planted law, in the layout Ray Tune 2.60 writes.

The tests use them as known answers and `benchmarks/bench_analysis.py` as a large input; they
also make a quick demo of the report:

    python -m analysis.synthetic --out /tmp/demo --scenario saturating
    python -m analysis.fit_rule --results /tmp/demo

Planted truth: the best lr of batch size B is `Law.lr_star(B)`; the final validation loss of a
trial is `floor + curvature * (d**2 + skew * d**3) + noise` with d = log10(lr / lr*(B)) (the
cubic term makes the curve steeper on the high-lr side without moving its minimum); trials more
than `diverge_above` decades above lr*(B) diverge (NaN / Infinity losses, `diverged: true`).
The lrs tried are a fixed log grid around a search centre that does not know the truth.

Optional plants (off by default; drawn from a second random stream, so the folders of the
scenarios without them stay identical): a gradient noise scale that every trial reports
(`noise_scale`, about `SweepSpec.noise_scale` near the best lr), a steps-to-target curve
(`StepsLaw`: perfect scaling, diminishing returns, plateau) reported as `steps_to_target`, and
the optimizer written to params.json (`SweepSpec.optimizer`, `momentum`).
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

LAW_KINDS = ("linear", "sqrt", "power", "saturating", "surge")
N_TRAIN = 4000  # examples per epoch of the pretend data set
STATE_FILES = (
    "experiment_state-2026-11-26_15-00-00.json",
    "basic-variant-state-2026-11-26_15-00-00.json",
    "tuner.pkl",
    "searcher-state-2026-11-26_15-00-00.pkl",
)


@dataclass(frozen=True)
class Law:
    """A planted optimum lr*(B). lr0 is lr* at b0 for linear / sqrt / power."""

    kind: str = "linear"
    lr0: float = 0.01
    b0: int = 8
    alpha: float = 1.0  # power only
    lr_max: float = 1.0  # saturating only
    b_noise: float = 64.0  # saturating and surge (the peak of a surge)

    def __post_init__(self) -> None:
        if self.kind not in LAW_KINDS:
            raise ValueError(f"unknown law '{self.kind}'; choose from {', '.join(LAW_KINDS)}")

    def lr_star(self, batch: float) -> float:
        if self.kind == "saturating":
            return self.lr_max / (1 + self.b_noise / batch)
        if self.kind == "surge":  # Adam's optimum (Li et al. 2024): rises as sqrt(B), falls
            b = batch / self.b_noise
            return self.lr_max / (0.5 * (b**-0.5 + b**0.5))
        alpha = {"linear": 1.0, "sqrt": 0.5}.get(self.kind, self.alpha)
        return self.lr0 * (batch / self.b0) ** alpha


@dataclass(frozen=True)
class StepsLaw:
    """Planted steps-to-target S*(B) at the best lr (Shallue et al. 2018): perfect scaling
    (S ~ 1/B) up to b1, diminishing returns (S ~ B**mid_slope) up to b2, then a plateau."""

    s0: float = 2000.0  # steps at b0
    b0: float = 8.0
    b1: float = 32.0
    b2: float = 256.0
    mid_slope: float = -0.5
    curvature: float = 2.0  # steps grow by (1 + curvature d^2), d = decades from lr*(B)
    reach_within: float = 0.6  # decades from lr*(B) beyond which the target is never reached
    noise: float = 0.03  # sd of log(steps)

    def steps_star(self, batch: float) -> float:
        b = min(max(batch, 0.0), self.b2)
        if b <= self.b1:
            return self.s0 * self.b0 / b
        return self.s0 * self.b0 / self.b1 * (b / self.b1) ** self.mid_slope


@dataclass(frozen=True)
class SweepSpec:
    """What was "run": batch sizes, the lrs tried around a search centre, seeds, warmups."""

    batch_sizes: tuple[int, ...] = (8, 16, 32, 64, 128, 256)
    lr_offsets: tuple[float, ...] = tuple(np.round(np.linspace(-1.0, 1.0, 9), 6))  # decades
    center_lr0: float = 0.01  # search centre at the smallest batch size
    center_alpha: float = 0.75  # search centre grows as B**center_alpha (between the rules)
    lr_shift: dict[int, float] = field(default_factory=dict)  # extra decades per batch size
    jitter: float = 0.03  # decades, per configuration (continuous, Optuna-like lrs)
    seeds: int = 3
    warmups: tuple[float, ...] = (0.0,)
    epochs: int = 5
    grid: bool = True  # also the linear-scaling grid: lr = grid_lr0 * B / min(B), phase "grid"
    grid_lr0: float = 0.01
    noise: float = 0.02  # sd of the final val_loss of a trial
    curvature: float = 0.3  # val_loss rise per squared decade away from lr*
    skew: float = 0.1
    loss_floor: float = 0.1
    diverge_above: float = 0.7  # decades above lr*(B) where trials diverge
    warmup_edge_gain: float = 0.0  # decades by which warmup > 0 raises the divergence edge
    warmup_shift: float = 0.0  # decades by which warmup > 0 moves the optimum
    checkpoints: int = 1  # checkpoint folders per trial (realism; never read)
    optimizer: str = "sgd"  # written to params.json
    momentum: float = 0.0
    noise_scale: float | None = None  # planted B_simple near the best lr (None: not reported)
    steps: StepsLaw | None = None  # planted steps-to-target curve (None: no target)
    target: tuple[str, float] = ("val_acc", 0.97)  # params.json target, with `steps`


def _final_metrics(d: float, spec: SweepSpec, rng: np.random.Generator) -> tuple[float, float]:
    shape = d * d + spec.skew * d**3
    loss = spec.loss_floor + spec.curvature * shape + rng.normal(0, spec.noise)
    acc = 0.99 - 0.25 * shape + rng.normal(0, spec.noise / 2)
    return loss, float(np.clip(acc, 0.05, 0.995))


def _extras(
    b: int, d: float, div: bool, spec: SweepSpec, rng: np.random.Generator
) -> tuple[float | None, int | None]:
    """(final noise_scale, epoch at which the target is reached) of one trial, from the
    optional plants (None when not planted / never reached)."""
    noise = None
    if spec.noise_scale is not None:
        noise = spec.noise_scale * (1 + 0.5 * d * d) * math.exp(rng.normal(0, 0.05))
    reach = None
    if spec.steps is not None and not div and abs(d) <= spec.steps.reach_within:
        law = spec.steps
        steps = law.steps_star(b) * (1 + law.curvature * d * d)
        steps *= math.exp(rng.normal(0, law.noise))
        epoch = math.ceil(steps / math.ceil(N_TRAIN / b))
        reach = epoch if epoch <= spec.epochs else None
    return noise, reach


def _lines(
    cfg: dict,
    trial_id: str,
    d: float,
    div: bool,
    rng: np.random.Generator,
    spec: SweepSpec,
    extras: tuple[float | None, int | None] = (None, None),
) -> list[dict]:
    loss_T, acc_T = _final_metrics(d, spec, rng)
    stop = int(rng.integers(1, spec.epochs + 1)) if div else spec.epochs
    steps_per_epoch = math.ceil(N_TRAIN / cfg["batch_size"])
    noise_final, reach = extras
    out = []
    for e in range(1, stop + 1):
        frac = (math.exp(-3 * e / spec.epochs) - math.exp(-3)) / (1 - math.exp(-3))
        loss = loss_T + (2.3 - loss_T) * frac
        acc = acc_T + (0.1 - acc_T) * frac
        bad = div and e == stop
        out.append(
            {
                "epoch": e,
                "examples_seen": e * N_TRAIN,
                "step": e * steps_per_epoch,
                "train_loss": math.nan if bad else loss * 0.9,
                "val_loss": (math.inf if e % 2 else math.nan) if bad else loss,
                "val_acc": 0.098 if bad else acc,
                "lr_now": cfg["lr"],
                "diverged": bad,
                "timesteps_total": e * N_TRAIN,
                "training_iteration": e,
                "trial_id": trial_id,
                "time_this_iter_s": 0.4,
                "time_total_s": 0.4 * e,
                "done": False,
                "timestamp": 1795000000 + e,
                "date": "2026-11-26_15-00-00",
                "hostname": "synthetic",
                "node_ip": "127.0.0.1",
                "pid": 4242,
                "config": cfg,
                "time_since_restore": 0.4 * e,
                "iterations_since_restore": e,
                "checkpoint_dir_name": f"checkpoint_{e - 1:06d}",
            }
        )
        if noise_final is not None:  # B_simple grows as training converges
            grown = noise_final * (0.4 + 0.6 * e / spec.epochs)
            out[-1]["noise_scale"] = math.nan if bad else grown
        if spec.steps is not None:
            reached = reach is not None and e >= reach
            out[-1]["steps_to_target"] = reach * steps_per_epoch if reached else math.nan
    return out


def write_trial(
    exp_dir: Path,
    index: int,
    cfg: dict,
    lines: list[dict],
    checkpoints: int = 0,
    tag: str = "abcde",
) -> Path:
    """One trial folder as Ray Tune writes it: params.json, result.json and the rest."""
    warm = cfg.get("warmup_epochs", 0)
    short = f"batch_size={cfg['batch_size']},lr={cfg['lr']:.4f},warmup_epochs={warm}"
    tdir = exp_dir / f"trainable_{tag}_{index:05d}_{index}_{short}_2026-11-26_15-00-00"
    tdir.mkdir(parents=True)
    (tdir / "params.json").write_text(json.dumps(cfg, indent=2))
    (tdir / "params.pkl").write_bytes(b"not read by the analysis")
    (tdir / "result.json").write_text("".join(json.dumps(line) + "\n" for line in lines))
    header = ",".join(k for k in (lines[0] if lines else {"epoch": 0}) if k != "config")
    (tdir / "progress.csv").write_text(header + "\n")
    (tdir / "events.out.tfevents.1795000000.synthetic").write_bytes(b"\x00" * 16)
    for c in range(min(checkpoints, len(lines))):
        (tdir / f"checkpoint_{c:06d}").mkdir()
        (tdir / f"checkpoint_{c:06d}" / "state.pt").write_bytes(b"\x00")
    return tdir


def _configs(
    law: Law, spec: SweepSpec, rng: np.random.Generator
) -> list[tuple[str, float, int, float]]:
    """(phase, lr, batch, warmup) of every configuration, before seeds."""
    b_min = min(spec.batch_sizes)
    out = []
    for b in spec.batch_sizes:
        center = math.log10(spec.center_lr0) + spec.center_alpha * math.log10(b / b_min)
        center += spec.lr_shift.get(b, 0.0)
        for w in spec.warmups:
            if spec.grid:
                out.append(("grid", spec.grid_lr0 * b / b_min, b, w))
            for off in spec.lr_offsets:
                x = center + off + rng.uniform(-spec.jitter, spec.jitter)
                out.append(("optuna", 10**x, b, w))
    return out


def write_results(
    root: str | Path,
    law: Law,
    spec: SweepSpec | None = None,
    name: str = "synthetic",
    seed: int = 0,
) -> Path:
    """Write one experiment folder `root/name` from the planted law; returns that folder."""
    spec = spec or SweepSpec()
    rng = np.random.default_rng(seed)
    rng_extra = np.random.default_rng(seed + 7919)  # the optional plants' own stream
    exp_dir = Path(root) / name
    exp_dir.mkdir(parents=True, exist_ok=True)
    for fname in STATE_FILES:
        body = json.dumps({"note": "synthetic"}) if fname.endswith(".json") else "not a pickle"
        (exp_dir / fname).write_text(body)
    index = 0
    for phase, lr, b, w in _configs(law, spec, rng):
        warm = w > 0
        x_star = math.log10(law.lr_star(b)) + spec.warmup_shift * warm
        d = math.log10(lr) - x_star
        div = d > spec.diverge_above + spec.warmup_edge_gain * warm
        for s in range(spec.seeds):
            cfg = {
                "batch_size": b,
                "lr": lr,
                "warmup_epochs": w,
                "seed": s,
                "epochs": spec.epochs,
                "dataset": "synthetic",
                "model": "cnn1",
                "optimizer": spec.optimizer,
                "momentum": spec.momentum,
                "weight_decay": 0.0,
                "phase": phase,
            }
            if spec.steps is not None:
                cfg["target_metric"], cfg["target_value"] = spec.target
            if spec.noise_scale is not None:
                cfg["measure_noise_scale"] = True
            tid = f"abcde_{index:05d}"
            lines = _lines(cfg, tid, d, div, rng, spec, _extras(b, d, div, spec, rng_extra))
            write_trial(exp_dir, index, cfg, lines, spec.checkpoints)
            index += 1
    (exp_dir / "planted.json").write_text(json.dumps({"law": asdict(law)}))
    return exp_dir


WIDE_OFFSETS = tuple(np.round(np.linspace(-1.25, 1.25, 11), 6))
DOUBLING = (8, 16, 32, 64, 128, 256, 512, 1024)


def scenario(name: str) -> tuple[Law, SweepSpec]:
    """Named known-answer cases used by the tests, the benchmark and the demo."""
    cases = {
        "linear": (Law("linear", lr0=0.01), SweepSpec()),
        "sqrt": (Law("sqrt", lr0=0.01), SweepSpec()),
        "power": (Law("power", lr0=0.01, alpha=0.75), SweepSpec()),
        # B_noise = 64 inside 8..1024: linear below the knee, flat above
        "saturating": (
            Law("saturating", lr_max=0.09, b_noise=64.0),
            SweepSpec(batch_sizes=DOUBLING, center_alpha=0.5, lr_offsets=WIDE_OFFSETS),
        ),
        # the lrs tried at B = 256 stop ~0.6 decades below its optimum: an edge optimum
        "edge": (Law("linear", lr0=0.01), SweepSpec(lr_shift={256: -1.2}, grid=False)),
        # the article's linear-scaling grid only: one lr per batch size, warmup 0 and 1
        "grid_only": (
            Law("linear", lr0=0.01),
            SweepSpec(
                batch_sizes=(8, 16, 24, 32, 40, 48, 56), lr_offsets=(), seeds=1, warmups=(0.0, 1.0)
            ),
        ),
        # few batch sizes, one seed, noisy: the rules cannot be told apart
        "underpowered": (
            Law("sqrt", lr0=0.01),
            SweepSpec(batch_sizes=(8, 12, 16, 24), seeds=1, noise=0.03, center_alpha=0.75),
        ),
        # warmup raises the divergence edge by 0.4 decades and leaves the optimum in place
        "warmup": (
            Law("linear", lr0=0.01),
            SweepSpec(warmups=(0.0, 1.0), warmup_edge_gain=0.4, diverge_above=0.45),
        ),
        # SGD with momentum 0.9: the linear rule on the lr (effective lr = 10 x lr)
        "momentum": (
            Law("linear", lr0=0.001),
            SweepSpec(optimizer="momentum", momentum=0.9, center_lr0=0.001, grid_lr0=0.001),
        ),
        # Adam whose best lr does not depend on the batch size (the article's claim)
        "adam_constant": (
            Law("power", lr0=0.002, alpha=0.0),
            SweepSpec(optimizer="adam", center_lr0=0.002, center_alpha=0.25, grid_lr0=0.002),
        ),
        # Adam whose best lr rises as sqrt(B), peaks at B = 64 and falls (the surge)
        "adam_surge": (
            Law("surge", lr_max=0.004, b_noise=64.0),
            SweepSpec(
                batch_sizes=DOUBLING,
                optimizer="adam",
                center_lr0=0.003,
                center_alpha=0.0,
                lr_offsets=WIDE_OFFSETS,
                grid_lr0=0.003,
            ),
        ),
        # steps to val_acc 0.97: perfect scaling to B = 32, slope -0.5 to 256, then flat;
        # every trial also reports a noise scale of about 300
        "steps": (
            Law("linear", lr0=0.01),
            SweepSpec(
                batch_sizes=(8, 16, 32, 64, 128, 256, 512),
                epochs=30,
                seeds=2,
                steps=StepsLaw(),
                noise_scale=300.0,
            ),
        ),
    }
    if name not in cases:
        raise ValueError(f"unknown scenario '{name}'; choose from {', '.join(cases)}")
    return cases[name]


SCENARIOS = (
    "linear",
    "sqrt",
    "power",
    "saturating",
    "edge",
    "grid_only",
    "underpowered",
    "warmup",
    "momentum",
    "adam_constant",
    "adam_surge",
    "steps",
)


def add_oddities(exp_dir: str | Path) -> dict[str, int]:
    """Damage a results folder the way real runs do; returns what a reader should count.

    One finished trial loses half of its last line (crash mid-write), one trial has an empty
    result.json and one none at all (not started), one stopped after 2 epochs (still running),
    one has unknown extra keys in params.json and result.json, one params.json is corrupt."""
    exp_dir = Path(exp_dir)
    trials = sorted(p.parent for p in exp_dir.glob("*/params.json"))
    done = [t for t in trials if '"diverged": true' not in (t / "result.json").read_text()]
    text = (done[0] / "result.json").read_text().rstrip("\n")
    (done[0] / "result.json").write_text(text[: len(text) - len(text.split("\n")[-1]) // 2])
    cfg = json.loads((done[1] / "params.json").read_text())
    lines = [json.loads(x) for x in (done[1] / "result.json").read_text().splitlines()]
    write_trial(exp_dir, 90001, {**cfg, "seed": 901}, [], tag="zzzzz")
    empty = write_trial(exp_dir, 90002, {**cfg, "seed": 902}, [], tag="zzzzz")
    (empty / "result.json").unlink()
    write_trial(exp_dir, 90003, {**cfg, "seed": 903}, lines[:2], tag="zzzzz")
    extra_cfg = {**cfg, "seed": 904, "label_smoothing": 0.1, "notes": {"by": "someone"}}
    extra_lines = [{**x, "grad_norm": 1.5, "custom": [1, 2]} for x in lines]
    write_trial(exp_dir, 90004, extra_cfg, extra_lines, tag="zzzzz")
    broken = write_trial(exp_dir, 90005, {**cfg, "seed": 905}, lines, tag="zzzzz")
    (broken / "params.json").write_text('{"batch_size": 8, "lr": ')
    return {"n_truncated": 1, "n_empty": 2, "n_partial": 2, "n_unreadable": 1, "n_extra": 1}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="results folder to create")
    p.add_argument("--scenario", default="saturating", choices=SCENARIOS)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--oddities", action="store_true", help="also add truncated/empty trials")
    a = p.parse_args(argv)
    law, spec = scenario(a.scenario)
    exp = write_results(a.out, law, spec, seed=a.seed)
    if a.oddities:
        add_oddities(exp)
    print(f"wrote {exp} (scenario {a.scenario}: {law})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
