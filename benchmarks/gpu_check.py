"""GPU check without Ray: the project's trial step against the tutorial-style one, on one card.

The GPU machines have torch, torchvision and numpy but no Ray, Optuna or mlxtend, and no
internet, so this script drives `trainables.train.train` (the one training loop) and the
tutorial-style loop of `benchmarks/tutorial.py` directly, on synthetic MNIST-shaped data
(60,000 + 10,000 uint8 28x28 digits-like images, 10 classes). It prints:
1. per-trial samples/s (one epoch of training + validation, as bench.py defines it) at batch 8,
   64 and 512: tutorial-style (per-sample PIL decode, DataLoader), the project's eager step and
   its CUDA-graph step (what the sweep runs), and the ratios;
2. equivalence of the graph-captured step and the eager step over 100 steps in fp32 (TF32 off,
   deterministic cuDNN), with a per-step warmup lr: max relative difference of the loss
   trajectory and of the final weights, for sgd, momentum and adam; and of whole `train()` runs;
3. GPU memory of one trial on full MNIST (allocator peak, and device memory per process with
   the CUDA context);
4. packing: N trainable processes sharing the GPU (each cycling through the article grid's batch
   sizes 8..56, one trial after another, data loaded once per process), aggregate samples/s for
   N = 1, 4, 8, 16 against one tutorial-style trial on the GPU (the sweep-level ratio); with
   `--mps`, the same under CUDA MPS (needs nvidia-cuda-mps-control; started and stopped here).
It runs on CPU too (small sizes, no graphs, N = 1, 2), so it can be checked anywhere.

    PYTHONUNBUFFERED=1 python -m benchmarks.gpu_check [--quick] [--mps] [--out FILE]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import select
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks import tutorial
from trainables import fast_step
from trainables.contract import TrainConfig
from trainables.models import get_model
from trainables.schedule import lr_at
from trainables.tensor_data import TensorData
from trainables.train import loss_fn, make_optimizer, train

ROOT = Path(__file__).resolve().parents[1]  # worker processes run `-m benchmarks.gpu_check` here

GRID_BATCHES = [8, 16, 24, 32, 40, 48, 56]  # the article grid's batch sizes
OUT_LINES: list[str] = []
OUT_FILE: Path | None = None


def say(line: str = "") -> None:
    print(line, flush=True)
    OUT_LINES.append(line)
    if OUT_FILE is not None:
        OUT_FILE.write_text("\n".join(OUT_LINES) + "\n")


def synthetic_mnist(n_train: int, n_val: int, seed: int = 0) -> tuple[np.ndarray, ...]:
    """uint8 28x28 images: a fixed blob pattern per class plus noise (learnable, MNIST-sized)."""
    rng = np.random.default_rng(seed)
    protos = rng.random((10, 28, 28)) < 0.15
    n = n_train + n_val
    y = rng.integers(0, 10, n)
    x = protos[y] * rng.integers(120, 256, (n, 28, 28)) + rng.integers(0, 60, (n, 28, 28))
    x = np.clip(x, 0, 255).astype(np.uint8)
    return x[:n_train], y[:n_train].astype(np.int64), x[n_train:], y[n_train:].astype(np.int64)


def tensor_data(arrays: tuple[np.ndarray, ...], device: str) -> TensorData:
    """The project's resident data: normalised fp32 tensors on the device."""
    x_tr, y_tr, x_va, y_va = arrays

    def norm(x: np.ndarray) -> torch.Tensor:
        t = torch.as_tensor(x, dtype=torch.float32).unsqueeze(1) / 255.0
        return (t - tutorial.MEAN) / tutorial.STD

    return TensorData(norm(x_tr), torch.as_tensor(y_tr), norm(x_va), torch.as_tensor(y_va), 10).to(
        torch.device(device)
    )


def subset(arrays: tuple[np.ndarray, ...], n_train: int) -> tuple[np.ndarray, ...]:
    """First n_train training images and n_train / 6 validation images (MNIST's ratio)."""
    x_tr, y_tr, x_va, y_va = arrays
    n_val = max(1, n_train // 6)
    return x_tr[:n_train], y_tr[:n_train], x_va[:n_val], y_va[:n_val]


def project_rate(data: TensorData, batch: int, n_train: int, graph: bool) -> float:
    n_val = max(1, n_train // 6)
    d = TensorData(data.x_train, data.y_train, data.x_val[:n_val], data.y_val[:n_val], 10)
    cfg = TrainConfig(
        batch_size=batch,
        lr=0.001 * batch / 8,
        epochs=1,
        n_train=n_train,
        cuda_graph=graph,
        dataset="synthetic-mnist",
    )
    m = list(train(cfg, d))[-1].metrics
    return m.examples_seen / m.train_time_s


def tutorial_rate(arrays: tuple[np.ndarray, ...], batch: int, n_train: int, device: str) -> float:
    m = list(tutorial.run_epochs(subset(arrays, n_train), batch, 0.001 * batch / 8, 0, 1, device))[
        -1
    ]
    return m["examples_seen"] / m["train_time_s"]


def section_rates(arrays: tuple, data: TensorData, device: str, runs: int, big: bool) -> None:
    say(f"1. per-trial samples/s (one epoch: training + validation; median of {runs} runs)")
    say(
        f"{'batch':>6} {'tutorial':>10} {'eager':>10} {'graph':>10} "
        f"{'eager/tut':>10} {'graph/tut':>10}"
    )
    sizes = {8: (8000, 16000, 60000), 64: (16000, 60000, 60000), 512: (60000, 60000, 60000)}
    if not big:
        sizes = {8: (800, 800, 800), 64: (2048, 2048, 2048), 512: (2048, 2048, 2048)}
    for b, (n_tut, n_eager, n_graph) in sizes.items():
        tut = statistics.median(tutorial_rate(arrays, b, n_tut, device) for _ in range(runs))
        eager = statistics.median(project_rate(data, b, n_eager, False) for _ in range(runs))
        graph = statistics.median(project_rate(data, b, n_graph, True) for _ in range(runs))
        say(
            f"{b:>6} {tut:>10,.0f} {eager:>10,.0f} {graph:>10,.0f} {eager / tut:>9.1f}x "
            f"{graph / tut:>9.1f}x"
        )
    if device != "cuda":
        say("   (no CUDA here: 'graph' falls back to the eager step)")


def trajectory(
    data: TensorData, optimizer: str, mode: str, steps: int, batch: int, dropout: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-step losses and final weights of `steps` steps of one step implementation: `eager`
    (as train() runs with cuda_graph=False), `graph`, or `eager-same-opt` (the graph path's
    optimizer and lr tensor, never captured: isolates the capture itself)."""
    device = data.x_train.device
    cfg = TrainConfig(
        batch_size=batch, lr=0.01 if optimizer != "adam" else 0.001, optimizer=optimizer
    )
    torch.manual_seed(0)  # init and the dropout stream, identical for both
    model = get_model("cnn1")(data.in_shape, 10).to(device)
    if not dropout:
        for m in model.modules():
            if isinstance(m, torch.nn.Dropout):
                m.p = 0.0
    model.train()
    loss_of = functools.partial(loss_fn, "classification")
    if mode in ("graph", "eager-same-opt"):
        lr_t = torch.tensor(cfg.lr, device=device)
        opt = make_optimizer(cfg, model.parameters(), lr_t)
        inputs = fast_step.StepInputs(model, opt, loss_of, data.x_train, data.y_train)
        step = fast_step.GraphStep(
            inputs, lr_t, batch, eager_steps=3 if mode == "graph" else steps + 1
        )
    else:
        opt = make_optimizer(cfg, model.parameters())
        step = fast_step.EagerStep(
            fast_step.StepInputs(model, opt, loss_of, data.x_train, data.y_train)
        )
    gen = torch.Generator(device=device).manual_seed(1)
    perm = torch.randperm(steps * batch, device=device, generator=gen)
    losses = []
    for i in range(steps):
        lr = lr_at(i, cfg.lr, steps // 2, steps)  # warmup over half: the lr changes each step
        losses.append(step(perm[i * batch : (i + 1) * batch], lr).clone())
    weights = torch.cat([p.detach().flatten() for p in model.parameters()])
    return torch.stack(losses).cpu(), weights.cpu()


def rel_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(((a - b).abs() / b.abs().clamp_min(1e-12)).max())


def norm_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm().clamp_min(1e-12))


def section_equivalence(data: TensorData, device: str) -> None:
    say(
        "2. CUDA-graph step vs eager step, 100 steps, fp32 (TF32 off, deterministic cuDNN), "
        "batch 64, warmup lr"
    )
    if device != "cuda":
        say("   skipped: no CUDA here (the graph step needs a GPU)")
        return
    flags = (
        torch.backends.cudnn.allow_tf32,
        torch.backends.cuda.matmul.allow_tf32,
        torch.backends.cudnn.deterministic,
        torch.backends.cudnn.benchmark,
    )
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        for optimizer, dropout in (
            ("sgd", True),
            ("sgd", False),
            ("momentum", True),
            ("adam", True),
        ):
            le, we = trajectory(data, optimizer, "eager", 100, 64, dropout)
            lg, wg = trajectory(data, optimizer, "graph", 100, 64, dropout)
            ls, ws = trajectory(data, optimizer, "eager-same-opt", 100, 64, dropout)
            say(
                f"   {optimizer:<9} dropout {'on ' if dropout else 'off'}: graph vs eager: max "
                f"rel diff of the losses {rel_diff(lg, le):.2e}, weights |dw|/|w| "
                f"{norm_diff(wg, we):.2e}; vs eager with the graph's optimizer: losses "
                f"{rel_diff(lg, ls):.2e}, weights {norm_diff(wg, ws):.2e}; loss "
                f"{float(le[0]):.4f} -> {float(le[-1]):.4f}"
            )
        n_val = 1000
        d = TensorData(data.x_train, data.y_train, data.x_val[:n_val], data.y_val[:n_val], 10)
        runs = {}
        for graph in (False, True):
            cfg = TrainConfig(
                batch_size=32, lr=0.004, epochs=2, warmup_epochs=1, n_train=6400, cuda_graph=graph
            )
            runs[graph] = [e.metrics for e in train(cfg, d)]
        worst = max(
            rel_diff(torch.tensor([getattr(g, k)]), torch.tensor([getattr(e, k)]))
            for e, g in zip(runs[False], runs[True], strict=True)
            for k in ("train_loss", "val_loss")
        )
        say(
            f"   train(), 2 epochs x 200 steps, batch 32, warmup 1 epoch: max rel diff of the "
            f"epoch train/val losses {worst:.2e}"
        )
    finally:
        (
            torch.backends.cudnn.allow_tf32,
            torch.backends.cuda.matmul.allow_tf32,
            torch.backends.cudnn.deterministic,
            torch.backends.cudnn.benchmark,
        ) = flags


# ------------------------------------------------------------------ packing (worker processes)


def worker(args: argparse.Namespace) -> None:
    """One trainable process: data once, then trials back to back until the deadline."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.set_num_threads(1)
    n_data = (60000, 10000) if args.full else (args.n_train, args.n_train // 6)
    data = tensor_data(synthetic_mnist(*n_data, seed=1), device)  # held once per process
    n_val = max(1, args.n_train // 6)  # validate on as many images as the tutorial does
    data = TensorData(data.x_train, data.y_train, data.x_val[:n_val], data.y_val[:n_val], 10)
    list(train(TrainConfig(batch_size=8, lr=0.001, epochs=1, n_train=256), data))  # warm up
    print("READY", flush=True)
    t_go = float(sys.stdin.readline().split()[1])
    while time.time() < t_go:
        time.sleep(0.001)
    deadline = t_go + args.duration
    examples, t_last, trials, i = 0, t_go, 0, args.offset
    while time.time() < deadline:
        b = GRID_BATCHES[i % len(GRID_BATCHES)]
        cfg = TrainConfig(
            batch_size=b, lr=0.001 * b / 8, epochs=args.epochs, seed=i, n_train=args.n_train
        )
        for ep in train(cfg, data):
            if time.time() > deadline:
                break
            examples += ep.metrics.examples_seen // ep.metrics.epoch  # this epoch's
            t_last = time.time()
        trials, i = trials + 1, i + 1
    peak = torch.cuda.max_memory_reserved() if device == "cuda" else 0
    print(
        json.dumps(
            {
                "examples": examples,
                "seconds": t_last - t_go,
                "trials": trials,
                "peak_reserved": peak,
            }
        ),
        flush=True,
    )


def device_used_bytes() -> int | None:
    if not torch.cuda.is_available():
        return None
    free, total = torch.cuda.mem_get_info()
    return total - free


def _wait_ready(proc: subprocess.Popen, deadline: float) -> None:
    assert proc.stdout is not None
    while True:
        ready, _, _ = select.select([proc.stdout], [], [], max(0.0, deadline - time.time()))
        if not ready:
            raise RuntimeError("a worker process did not get ready in time")
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"a worker process exited (code {proc.wait()})")
        if line.strip() == "READY":
            return


def pack(
    n: int,
    duration: float,
    n_train: int,
    epochs: int,
    full: bool,
    env: dict | None = None,
    timeout: float = 60,
) -> dict:
    """Start n worker processes, release them together, return aggregate samples/s."""
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.gpu_check",
        "--worker",
        "--duration",
        str(duration),
        "--n-train",
        str(n_train),
        "--epochs",
        str(epochs),
    ]
    if full:
        cmd.append("--full")
    procs = [
        subprocess.Popen(
            cmd + ["--offset", str(i)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
            cwd=ROOT,
        )
        for i in range(n)
    ]
    deadline = time.time() + timeout
    try:
        for p in procs:
            _wait_ready(p, deadline)
        before = device_used_bytes()
        t_go = time.time() + 0.5
        for p in procs:
            p.stdin.write(f"GO {t_go}\n")  # type: ignore[union-attr]
            p.stdin.flush()  # type: ignore[union-attr]
        time.sleep(0.5 + duration / 2)
        during = device_used_bytes()
        results = []
        for p in procs:
            out, _ = p.communicate(timeout=duration + 30)
            results.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    rate = sum(r["examples"] / r["seconds"] for r in results if r["seconds"] > 0)
    return {
        "rate": rate,
        "trials": sum(r["trials"] for r in results),
        "peak_reserved": max(r["peak_reserved"] for r in results),
        "per_process": None if before is None or during is None else (during - before) / n,
    }


def tutorial_sweep_rate(arrays: tuple, device: str, n_train: int, epochs: int) -> float:
    """One tutorial-style trial at a time, one of each of the grid's batch sizes: examples per
    second of trial time (the tutorial's per-trial process start is not counted, in its
    favour)."""
    examples, seconds = 0, 0.0
    for b in GRID_BATCHES:
        m = list(
            tutorial.run_epochs(subset(arrays, n_train), b, 0.001 * b / 8, 0, epochs, device)
        )[-1]
        examples, seconds = examples + m["examples_seen"], seconds + m["train_time_s"]
    return examples / seconds


def section_packing(
    arrays: tuple, device: str, big: bool, counts: list[int], mps_counts: list[int]
) -> None:
    duration = 8.0 if big else 3.0
    n_train, epochs = (6000, 2) if big else (1200, 1)
    say(
        f"4. packing: N processes share the {device}, each cycling through trials of batch "
        f"8..56 ({epochs} epochs x {n_train} examples), {duration:.0f} s measured"
    )
    tut = tutorial_sweep_rate(arrays, device, n_train, epochs)
    say(
        f"   tutorial-style, one trial at a time (one trial of each batch size): "
        f"{tut:,.0f} samples/s"
    )
    best = 0.0
    modes: list[tuple[str, list[int]]] = [("", counts)]
    if mps_counts:
        modes.append(("MPS", mps_counts))
    for label, ns in modes:
        env = None
        if label == "MPS":
            env = mps_env()
            if env is None:
                say("   MPS: not available here (nvidia-cuda-mps-control missing or failed)")
                continue
        try:
            for n in ns:
                r = pack(n, duration, n_train, epochs, big, env=env)
                best = max(best, r["rate"])
                mem = (
                    f", {r['per_process'] / 2**20:,.0f} MiB of device memory per process"
                    if r["per_process"]
                    else ""
                )
                say(
                    f"   {label + ' ' if label else ''}N={n:>2}: {r['rate']:>10,.0f} samples/s "
                    f"aggregate ({r['rate'] / tut:.1f}x tutorial), {r['trials']} trials, "
                    f"allocator peak {r['peak_reserved'] / 2**20:,.0f} MiB{mem}"
                )
        except Exception as err:  # report and go on: the other measurements stand
            say(f"   {label} packing failed: {err!r}")
        finally:
            if env is not None:
                mps_stop(env)
    say(
        f"   sweep-level ratio (best packed aggregate / one tutorial-style trial): "
        f"{best / tut:.1f}x (target >= 10x on a GPU)"
    )


def mps_env() -> dict | None:
    """Start a CUDA MPS control daemon in /tmp; the environment its clients need."""
    control = shutil.which("nvidia-cuda-mps-control")
    if control is None:
        return None
    env = dict(
        os.environ, CUDA_MPS_PIPE_DIRECTORY="/tmp/mps-pipe", CUDA_MPS_LOG_DIRECTORY="/tmp/mps-log"
    )
    for d in ("/tmp/mps-pipe", "/tmp/mps-log"):
        os.makedirs(d, exist_ok=True)
    if subprocess.run([control, "-d"], env=env, timeout=20).returncode != 0:
        return None
    return env


def mps_stop(env: dict) -> None:
    control = shutil.which("nvidia-cuda-mps-control")
    if control:
        subprocess.run([control], input="quit\n", text=True, env=env, timeout=30, check=False)


def memory_by_batch(arrays: tuple, device: str) -> None:
    """Peak allocator memory of one trial per batch size (graph and eager), in this process."""
    data = tensor_data(arrays, device)
    n_val = 1000
    data = TensorData(data.x_train, data.y_train, data.x_val[:n_val], data.y_val[:n_val], 10)
    base = torch.cuda.memory_allocated()
    say("   batch: peak allocated / peak reserved above the data, MiB (eager | graph)")
    cells = []
    for b in [*GRID_BATCHES, 512]:
        row = []
        for graph in (False, True):
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            list(
                train(
                    TrainConfig(batch_size=b, lr=0.001, epochs=1, n_train=6000, cuda_graph=graph),
                    data,
                )
            )
            row.append(
                f"{(torch.cuda.max_memory_allocated() - base) / 2**20:,.0f}/"
                f"{(torch.cuda.max_memory_reserved() - base) / 2**20:,.0f}"
            )
        cells.append(f"{b}: {row[0]} | {row[1]}")
    for i in range(0, len(cells), 4):
        say("   " + ";  ".join(cells[i : i + 4]))


def section_memory(arrays: tuple, device: str) -> None:
    say(
        "3. GPU memory of one trial, full MNIST-sized data (60,000 + 10,000 images, fp32: "
        "211 MiB, held once per process)"
    )
    if device != "cuda":
        say("   skipped: no CUDA here")
        return
    say("   in this process (after the sections above):")
    memory_by_batch(arrays, device)
    # a fresh process, as a new Ray worker: the peaks must not grow from trial to trial
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.gpu_check", "--only", "memory-table"],
        capture_output=True,
        text=True,
        timeout=90,
        cwd=ROOT,
    )
    say("   in a fresh process (trials in the order shown):")
    for line in out.stdout.splitlines()[1:]:
        say(line)
    if out.returncode:
        say(f"   (fresh-process run failed: {out.stderr.strip().splitlines()[-1:]})")


def main(argv: list[str] | None = None) -> int:
    global OUT_FILE
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    p.add_argument("--mps", action="store_true", help="also measure packing under CUDA MPS")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument(
        "--only",
        default="rates,equivalence,memory,packing",
        help="comma-separated sections to run",
    )
    p.add_argument("--counts", default="1,4,8,16", help="packing: process counts")
    p.add_argument("--mps-counts", default="8,16", help="packing under MPS: process counts")
    p.add_argument("--out", default=None, help="also write the report to this file")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--duration", type=float, default=8.0, help=argparse.SUPPRESS)
    p.add_argument("--n-train", type=int, default=6000, help=argparse.SUPPRESS)
    p.add_argument("--epochs", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--offset", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--full", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.worker:
        worker(a)
        return 0
    OUT_FILE = Path(a.out) if a.out else None
    device = "cuda" if torch.cuda.is_available() else "cpu"
    big = device == "cuda" and not a.quick
    t0 = time.time()
    torch.set_num_threads(1)
    name = torch.cuda.get_device_name(0) if device == "cuda" else f"CPU ({os.cpu_count()} cores)"
    say(
        f"gpu_check: {name} | torch {torch.__version__} | "
        f"{'full' if big else 'small (CPU or --quick)'} sizes | {time.strftime('%Y-%m-%d')}"
    )
    arrays = synthetic_mnist(60000, 10000) if big else synthetic_mnist(4000, 1000)
    only = a.only.split(",")
    if only == ["memory-table"]:
        memory_by_batch(arrays, device)
        return 0
    data = tensor_data(arrays, device)
    project_rate(data, 8, 512, True)  # warm: CUDA context, cuDNN
    counts = [int(n) for n in a.counts.split(",")] if big else [1, 2]
    mps_counts = [int(n) for n in a.mps_counts.split(",")] if a.mps else []
    sections = {
        "rates": lambda: section_rates(arrays, data, device, 1 if a.quick else a.runs, big),
        "equivalence": lambda: section_equivalence(data, device),
        "memory": lambda: section_memory(arrays, device),
        "packing": lambda: section_packing(arrays, device, big, counts, mps_counts),
    }
    for key, section in sections.items():
        if key not in only:
            continue
        try:
            section()
        except Exception as err:  # report and go on: the other sections still run
            say(f"   FAILED: {err!r}")
        say(f"   ({time.time() - t0:.0f} s elapsed)")
    say(
        "targets (GPU): graph/tutorial >= 8x at batch 8 and 64; sweep level >= 10x; "
        "graph = eager to ~1e-5; <= ~1 GB per trial"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
