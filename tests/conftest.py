"""Shared by several test files: the repository's paths and `python -m sweep` as users run it."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "sweep" / "configs"
SMOKE = CONFIGS / "smoke.yaml"  # seconds of training on the synthetic data set


def sweep_cmd(storage: Path, *args: str, config: Path = SMOKE) -> list[str]:
    """The command line of `python -m sweep --config CONFIG --storage STORAGE ARGS...`."""
    return [
        sys.executable,
        "-m",
        "sweep",
        "--config",
        str(config),
        "--storage",
        str(storage),
        *args,
    ]


def run_sweep(
    storage: Path,
    *args: str,
    config: Path = SMOKE,
    timeout: float = 300,
    env: dict[str, str] | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run a sweep to its end in a subprocess from the repository root; with `check`, fail the
    test (showing the end of stderr) unless it exits 0."""
    out = subprocess.run(
        sweep_cmd(storage, *args, config=config),
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check:
        assert out.returncode == 0, (out.stdout[-2000:], out.stderr[-3000:])
    return out


def heavy_imports(statement: str) -> list[str]:
    """Which of torch, Ray and Optuna a fresh Python has imported after running `statement`."""
    code = f"import sys; {statement}; print(*{{'torch', 'ray', 'optuna'}} & set(sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return sorted(out.stdout.split())


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (for a server a test starts)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sets(*overrides: str) -> list[str]:
    """`--set` arguments: sets("epochs=3", "seeds=2") -> ["--set", "epochs=3", ...]."""
    return [arg for o in overrides for arg in ("--set", o)]


# Test files that start Ray (a sweep, a cluster) or a server. `make test` runs the suite on two
# pytest-xdist workers (`-n 2 --dist loadgroup`): these files all go to one of them, one test
# after another, so that two Ray instances never share the machine (their ports, /tmp/ray, the
# token, and trials timed against 2 cores); the other worker meanwhile runs the rest, a whole
# file at a time (so a module's fixture is computed once). The kill-and-resume chains run alone
# afterwards: whether Ray continues a trial from its checkpoint depends on when its snapshot
# was taken, which the other worker's load shifts. `pytest -q` alone still runs everything.
ONE_AT_A_TIME = {
    "test_cli.py",
    "test_cluster.py",
    "test_config.py",
    "test_examples.py",
    "test_kill_resume.py",
    "test_optuna_phase.py",
    "test_pin.py",
    "test_resilience.py",
    "test_resume.py",
    "test_serve.py",
    "test_sweep_integration.py",
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        name = item.path.name
        item.add_marker(pytest.mark.xdist_group("ray" if name in ONE_AT_A_TIME else name))
