"""`make bench`: the project's trials and sweep against a tutorial-style baseline, in one run.

Prints one table (device, torch version, n runs, medians):
- per-trial samples/s at batch 8, 64 and 512: training examples per second of trial time (one
  epoch of training plus validation) for the tutorial-style loop (`benchmarks/tutorial.py`:
  per-sample PIL decode, DataLoader) and for the project's `trainables.train.train` as the
  sweep runs it, each in this process with one torch thread (one CPU slot) or on the GPU;
- the article grid (14 trials: B = 8k, lr = 0.001k, k = 1..7, warmup 0 and 1 epoch, 5 epochs on
  the 4,000 bundled digits) run through Ray Tune twice, one after the other: the project's real
  path (`python -m sweep` with the Optuna and confirmation phases off) and the tutorial-style
  grid. For each: wall time of the whole command (Ray's start included) and of `Tuner.fit`, the
  sum of the trials' own training times (`train_time_s`), and the overhead ratio
  wall / (sum of trial times / concurrent slots).
Both sides do the same work: default.yaml also measures the gradient noise scale and the steps
to a target (about 1.8x the compute), which the tutorial-style grid does not, so the project's
side turns both off (`EQUAL_WORK`), and `check_equal_work` stops the bench unless both ran the
same trials (batch sizes, epochs, examples) and the project's measured no noise scale.
With n > 1 every cell shows the median and [min-max]. The 1-minute load average is sampled at
the start and end of every sweep and printed: the machine may be shared, so read the ratios,
which are measured side by side, rather than the absolute times. No number here is asserted.

    python -m benchmarks.bench [--runs 3] [--sweep-runs 3] [--quick] [--skip-sweep] [--keep DIR]
`--quick` is a smoke run (small data, 4-trial grids, one run): about a minute on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from benchmarks import tutorial
from benchmarks.machine import cpu_model
from trainables.contract import DEFAULT_DATA_DIR, TrainConfig
from trainables.data import load_dataset
from trainables.train import train

ROOT = Path(__file__).resolve().parents[1]  # the sweeps run from here

TRIAL_BATCHES = (8, 64, 512)
# default.yaml measures the noise scale and the steps to a target; the tutorial-style grid
# measures neither, so the project's side of the sweep comparison turns them off
EQUAL_WORK = ("measure_noise_scale=false", "target=null")


def device_name(device: str) -> str:
    if device == "cuda":
        return torch.cuda.get_device_name(0)
    return f"{cpu_model()}, {os.cpu_count()} cores"


def project_rate(batch: int, n_train: int, device: str, data_dir: str) -> float:
    """Examples/s of one epoch (train + validation) of the project's training generator."""
    data = load_dataset("mnist5k", data_dir, device)
    cfg = TrainConfig(
        batch_size=batch, lr=0.001 * batch / 8, epochs=1, n_train=n_train, data_dir=data_dir
    )
    m = list(train(cfg, data))[-1].metrics
    return m.examples_seen / m.train_time_s


def tutorial_rate(batch: int, n_train: int, device: str, arrays: tuple) -> float:
    m = list(tutorial.run_epochs(arrays, batch, 0.001 * batch / 8, 0, 1, device, n_train))[-1]
    return m["examples_seen"] / m["train_time_s"]


def trial_rates(runs: int, n_train: int, device: str, data_dir: str) -> dict:
    """{(style, batch): [samples/s per run]}, the two styles interleaved run by run."""
    torch.set_num_threads(1)  # one CPU slot, as a trial gets in the sweep
    arrays = tutorial.load_arrays(data_dir)
    project_rate(8, 64, device, data_dir)  # warm caches (data on device, CUDA context)
    out: dict = {}
    for b in TRIAL_BATCHES:
        for _ in range(runs):
            out.setdefault(("tutorial", b), []).append(tutorial_rate(b, n_train, device, arrays))
            out.setdefault(("project", b), []).append(project_rate(b, n_train, device, data_dir))
    return out


def sweep_command(style: str, storage: Path, name: str, quick: bool) -> list[str]:
    if style == "project":
        cmd = [
            sys.executable,
            "-m",
            "sweep",
            "--config",
            "sweep/configs/default.yaml",
            "--set",
            "design=fixed",  # the grid alone: what the tutorial-style sweep runs
            "--set",
            "optuna.trials_per_batch_size=0",
            "--set",
            "confirm.top_k=0",
            *(arg for setting in EQUAL_WORK for arg in ("--set", setting)),
            "--no-report",
            "--fresh",
            "--storage",
            str(storage),
            "--name",
            name,
        ]
        if quick:
            cmd += ["--set", "batch_sizes=[8,16]", "--set", "epochs=1", "--set", "n_train=800"]
        return cmd
    cmd = [sys.executable, "-m", "benchmarks.tutorial", "--storage", str(storage), "--name", name]
    if quick:
        cmd += ["--k", "1", "2", "--epochs", "1", "--n-train", "800"]
    return cmd


def run_sweep(style: str, storage: Path, name: str, quick: bool) -> dict:
    """Run one grid in a subprocess; wall times from its start/end lines, trial times from
    its result files."""
    log_path = storage / f"{name}.log"
    load_start = os.getloadavg()[0]
    t0 = time.perf_counter()
    fit_start = fit_end = None
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            sweep_command(style, storage, name, quick),
            cwd=ROOT,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        assert proc.stdout is not None
        for line in proc.stdout:
            log.write(line)
            if "trials planned" in line:
                fit_start = time.perf_counter()
            elif "] finished" in line:
                fit_end = time.perf_counter()
        rc = proc.wait()
    wall = time.perf_counter() - t0
    if rc != 0 or fit_start is None or fit_end is None:
        tail = "".join(log_path.read_text().splitlines(keepends=True)[-30:])
        raise RuntimeError(f"{style} sweep failed (exit {rc}); end of {log_path}:\n{tail}")
    trials = read_trials(storage / name)
    return {
        "wall": wall,
        "fit": fit_end - fit_start,
        "trials": trials,
        "trial_time": sum(t["train_time_s"] for t in trials),
        "load": (load_start, os.getloadavg()[0]),
    }


def check_equal_work(tutorial_runs: list[dict], project_runs: list[dict]) -> str:
    """Raise RuntimeError unless every sweep ran the same trials (batch size, epochs, examples)
    and the project's measured no noise scale; else say what the work was."""

    def work(res: dict) -> list[tuple[int, int, int]]:
        return sorted((t["batch_size"], t["epochs"], t["examples_seen"]) for t in res["trials"])

    reference = work(tutorial_runs[0])
    for res in (*tutorial_runs, *project_runs):
        if work(res) != reference:
            raise RuntimeError(
                f"unequal work: trials (batch, epochs, examples) {work(res)} against "
                f"{reference}; the comparison would not be fair"
            )
    measured = sum(t["noise_scale_epochs"] for res in project_runs for t in res["trials"])
    if measured:
        raise RuntimeError(
            f"the project's trials measured the noise scale in {measured} epochs, which the "
            "tutorial-style ones do not: unequal work"
        )
    examples = sum(t[2] for t in reference)
    return (
        f"equal work: {len(reference)} trials, {examples:,} training examples on each side; "
        "no noise scale or steps-to-target measured"
    )


def read_trials(exp_dir: Path) -> list[dict]:
    """Last result row of every trial folder (JSON lines), with its batch size."""
    trials = []
    for result in sorted(exp_dir.glob("*/result.json")):
        rows = [json.loads(line) for line in result.read_text().splitlines() if line.strip()]
        if not rows:
            continue
        params = json.loads((result.parent / "params.json").read_text())
        batch = params.get("batch_size") or 8 * params["k"]
        last = rows[-1]
        noise = [r.get("noise_scale") for r in rows]
        trials.append(
            {
                "batch_size": int(batch),
                "train_time_s": float(last["train_time_s"]),
                "examples_seen": int(last["examples_seen"]),
                "epochs": len(rows),
                "noise_scale_epochs": sum(v is not None and v == v for v in noise),
            }
        )
    return trials


def med(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def cell(values: list[float], fmt: str) -> str:
    """The median, and [min-max] when there is more than one value."""
    text = format(med(values), fmt)
    if len(values) > 1:
        text += f" [{min(values):{fmt}}-{max(values):{fmt}}]"
    return text


def format_table(info: dict, rates: dict, sweeps: dict, slots: int) -> str:
    lines = [
        f"make bench: {info['what']}",
        f"device: {info['device']} | torch {torch.__version__} | {info['versions']}",
        f"n: {info['runs']} run(s) per trial rate, {info['sweep_runs']} run(s) per sweep; "
        "median [min-max]; ratio = project / tutorial-style (of the medians)",
        "",
        f"{'':44s}{'tutorial-style':>24s}{'project':>24s}{'ratio':>9s}",
    ]

    def row(label: str, tut: list, proj: list, fmt: str = ",.0f", ratio: bool = True) -> None:
        r = f"{med(proj) / med(tut):8.2f}x" if ratio and med(tut) > 0 else f"{'':9s}"
        lines.append(f"{label:44s}{cell(tut, fmt):>24s}{cell(proj, fmt):>24s}{r}")

    for b in TRIAL_BATCHES:
        if ("project", b) in rates:
            row(
                f"trial samples/s, batch {b} ({info['rate_device']})",
                rates[("tutorial", b)],
                rates[("project", b)],
            )
    if sweeps:
        t, p = sweeps["tutorial"], sweeps["project"]
        n_trials = len(t[0]["trials"])
        lines.append(f"sweep ({n_trials} trials, {slots} slots):")
        row(
            "  wall time, whole command (s)", [s["wall"] for s in t], [s["wall"] for s in p], ".1f"
        )
        row("  wall time, Tuner.fit (s)", [s["fit"] for s in t], [s["fit"] for s in p], ".1f")
        if len(t) > 1:  # each project sweep ran right after its tutorial-style one
            pairs = ", ".join(f"{b['wall'] / a['wall']:.2f}" for a, b in zip(t, p, strict=True))
            lines.append(f"  wall time ratio, run by run: {pairs}")
        row(
            "  sum of trial training times (s)",
            [s["trial_time"] for s in t],
            [s["trial_time"] for s in p],
            ".1f",
        )
        for label, key in (("command", "wall"), ("Tuner.fit", "fit")):
            row(
                f"  overhead: {label} wall / (trial time / {slots})",
                [s[key] / (s["trial_time"] / slots) for s in t],
                [s[key] / (s["trial_time"] / slots) for s in p],
                ".2f",
                ratio=False,
            )
        row(
            "  in-sweep trial samples/s (median trial)",
            [med([x["examples_seen"] / x["train_time_s"] for x in s["trials"]]) for s in t],
            [med([x["examples_seen"] / x["train_time_s"] for x in s["trials"]]) for s in p],
        )
        loads = [x for s in (*t, *p) for x in s.get("load", ())]
        if loads:
            lines.append(
                f"load average (1 min) at the sweeps' starts and ends: {min(loads):.1f}-"
                f"{max(loads):.1f} on {os.cpu_count()} cores"
            )
        if info.get("work"):
            lines.append(info["work"])
    lines.append("targets (CPU): sweep wall ratio <= 0.5x; project overhead <= 1.25")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runs", type=int, default=3, help="runs per trial rate (median shown)")
    p.add_argument(
        "--sweep-runs", type=int, default=3, help="runs of each sweep (median and spread)"
    )
    p.add_argument("--quick", action="store_true", help="smoke run: small data, 4-trial grids")
    p.add_argument("--skip-sweep", action="store_true", help="per-trial rates only")
    p.add_argument("--keep", default=None, help="keep the sweeps' results in this folder")
    p.add_argument("--data-dir", default=str(DEFAULT_DATA_DIR))
    a = p.parse_args(argv)
    runs = 1 if a.quick else a.runs
    sweep_runs = 1 if a.quick else a.sweep_runs
    device = "cuda" if torch.cuda.is_available() else "cpu"
    load_dataset("mnist5k", a.data_dir)  # writes the .npy cache the tutorial reads
    n_train = 1024 if a.quick else 2000
    print(f"[bench] per-trial samples/s on {device}, {runs} run(s) ...", flush=True)
    rates = trial_rates(runs, n_train, device, a.data_dir)
    sweeps: dict = {}
    slots = max(1, int(os.cpu_count() or 1))  # default.yaml: 1 CPU per trial
    if not a.skip_sweep:
        storage = Path(a.keep or tempfile.mkdtemp(prefix="bench-")).resolve()
        storage.mkdir(parents=True, exist_ok=True)
        try:
            for i in range(sweep_runs):
                for style in ("tutorial", "project"):
                    print(f"[bench] {style} sweep, run {i + 1} of {sweep_runs} ...", flush=True)
                    res = run_sweep(style, storage, f"{style}{i}", a.quick)
                    sweeps.setdefault(style, []).append(res)
                    print(
                        f"[bench]   {len(res['trials'])} trials, wall {res['wall']:.1f} s",
                        flush=True,
                    )
        finally:
            if not a.keep:
                shutil.rmtree(storage, ignore_errors=True)
    work = check_equal_work(sweeps["tutorial"], sweeps["project"]) if sweeps else ""
    try:
        import ray

        versions = f"ray {ray.__version__}"
    except ImportError:
        versions = "no ray"
    grid = (
        "quick grid (4 trials: B 8, 16; warmup 0, 1; 1 epoch on 800 digits)"
        if a.quick
        else "article grid (14 trials: B = 8k, lr = 0.001k, k = 1..7, warmup 0 and 1 "
        "epoch, 5 epochs on 4,000 digits)"
    )
    info = {
        "what": grid,
        "device": device_name(device),
        "versions": versions,
        "runs": runs,
        "sweep_runs": sweep_runs if sweeps else 0,
        "rate_device": f"{device}, 1 thread" if device == "cpu" else device,
        "work": work,
    }
    print()
    print(format_table(info, rates, sweeps, slots))
    return 0


if __name__ == "__main__":
    sys.exit(main())
