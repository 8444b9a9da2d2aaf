"""Driver memory over a long smoke sweep: the driver must not grow without bound.

    python -m benchmarks.driver_memory [--trials 500]

Runs `python -m sweep` on the synthetic data set with `--trials` one-epoch grid trials, samples
the driver's resident memory (RSS) every second, and prints it against trials finished.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]


def run(n_trials: int, storage: Path) -> list[tuple[float, int, float]]:
    """(seconds, trials finished, driver RSS in MB) samples."""
    per_batch = n_trials // 10  # 2 batch sizes x 5 warmups x per_batch multipliers
    multipliers = [round(0.5 + i / per_batch, 4) for i in range(per_batch)]
    cmd = [
        sys.executable,
        "-m",
        "sweep",
        "--config",
        "sweep/configs/smoke.yaml",
        "--storage",
        str(storage),
        "--no-report",
        "--name",
        "memory",
        "--set",
        "epochs=1",
        "--set",
        "batch_sizes=[64,128]",
        "--set",
        f"grid.lr_multipliers={multipliers}",
        "--set",
        "grid.warmup_epochs=[0,0.25,0.5,0.75,1]",
    ]
    proc = subprocess.Popen(
        cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    done = [0]

    def read() -> None:
        for line in proc.stdout:  # type: ignore[union-attr]
            m = re.match(r"\[sweep (\d+)/", line)
            if m:
                done[0] = int(m.group(1))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    driver = psutil.Process(proc.pid)
    samples, t0 = [], time.time()
    while proc.poll() is None:
        try:
            samples.append((time.time() - t0, done[0], driver.memory_info().rss / 2**20))
        except psutil.NoSuchProcess:
            break
        time.sleep(1.0)
    reader.join(timeout=10)
    if proc.returncode != 0:
        raise SystemExit(f"sweep failed with exit code {proc.returncode}")
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=500)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        samples = run(args.trials, Path(tmp))
    print(
        f"driver RSS over a {args.trials}-trial smoke sweep "
        f"({samples[-1][0]:.0f} s, psutil, 1 run):"
    )
    for frac in (0.1, 0.25, 0.5, 0.75, 1.0):
        target = frac * args.trials
        s = next((x for x in samples if x[1] >= target), samples[-1])
        print(f"  {s[1]:>5} trials done  {s[2]:8.1f} MB")
    print(f"  peak {max(x[2] for x in samples):.1f} MB")


if __name__ == "__main__":
    main()
