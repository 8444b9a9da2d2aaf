"""The examples (examples/*/sweep.yaml) end to end through `python -m sweep` and the report,
and a sweep of the user's own training function whose trials fail (the multi-node run of the
digits example is in tests/test_cluster.py, which has the cluster).

Sweeps are shrunk with --set (2 batch sizes, 2 epochs, the grid only) to keep seconds. The
failing sweep's driver finds the user's module through PYTHONPATH, which Ray's workers do not
get, so its trials can only import it from what Ray shipped (runtime_env py_modules).
"""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import pytest
from conftest import ROOT, run_sweep, sets

from trainables.contract import METRIC_KEYS, config_from_dict
from trainables.own_loop import run_own

pytestmark = [pytest.mark.integration, pytest.mark.slow]

EXAMPLES = ROOT / "examples"
TINY = sets(  # 2 grid trials of 2 epochs
    "batch_sizes=[16, 64]",
    "grid.warmup_epochs=[0]",
    "epochs=2",
    "optuna.trials_per_batch_size=0",
    "confirm.top_k=0",
    "confirm.seeds=0",
)


def trials(exp: Path) -> list[tuple[dict, list[dict]]]:
    out = []
    for params in sorted(exp.glob("*/params.json")):
        rows = [json.loads(x) for x in params.with_name("result.json").read_text().splitlines()]
        out.append((json.loads(params.read_text()), rows))
    return out


def last_rows(rows: list[dict]) -> dict[int, dict]:
    """The last row of each epoch (a resumed trial repeats the epoch it died in)."""
    return {r["epoch"]: r for r in rows}


def test_the_torch_loop_example_runs_through_the_sweep_and_the_report(tmp_path):
    config = EXAMPLES / "torch_loop" / "sweep.yaml"
    out = run_sweep(tmp_path, *TINY, config=config, timeout=300)
    exp = tmp_path / "torch_loop"
    found = trials(exp)
    assert len(found) == 2
    for params, rows in found:
        assert params["trainable"] == "examples.torch_loop.train:run"
        assert params["params"] == {"width": 16, "dropout": 0.1}
        assert params["optimizer"] == "momentum" and params["model"] == params["dataset"] == ""
        assert [r["epoch"] for r in rows] == [1, 2]
        assert set(METRIC_KEYS) <= set(rows[-1]) and not rows[-1]["diverged"]
        n_train = 1437 // params["batch_size"] * params["batch_size"]  # drop_last
        assert [r["timesteps_total"] for r in rows] == [n_train, 2 * n_train]  # via WarmupSchedule
    params, rows = found[0]  # the same trial in this process gives the same numbers
    again: list[dict] = []
    run_own(config_from_dict(params), "cpu", None, lambda m, s: again.append(m))
    assert rows[-1]["val_loss"] == pytest.approx(again[-1]["val_loss"], rel=1e-5)
    assert len(list(exp.glob("*/checkpoint_*/state.pt"))) == 4  # the state run() yielded
    assert list(exp.glob("*/events.out.tfevents.*"))
    assert "report:" in out.stdout
    best = json.loads((exp / "report" / "fit.json").read_text())["best_lr"]
    assert {b["batch_size"] for b in best} == {16, 64}


FAILING = """
import json, os

def run(trial):
    with open(os.environ["ATTEMPTS_LOG"], "a") as log:
        log.write(json.dumps([trial.batch_size, trial.start_epoch, trial.resume]) + "\\n")
    for epoch in range(trial.start_epoch + 1, trial.epochs + 1):
        if epoch == 2:
            raise ValueError("the user's own bug in epoch 2")
        yield {"val_loss": 1.0 / epoch}, {"after_epoch": epoch}
"""


def test_trials_that_all_fail_are_retried_from_their_state_then_exit_1_names_the_cause(tmp_path):
    code = tmp_path / "code"
    code.mkdir()
    (code / "buggy_train.py").write_text(textwrap.dedent(FAILING))
    config = tmp_path / "buggy.yaml"
    config.write_text(
        "name: buggy\ntrainable: buggy_train:run\nepochs: 2\nbatch_sizes: [16]\n"
        "max_failures: 1\ngrid: {base_lr: 0.1, lr_multipliers: [1], warmup_epochs: [0]}\n"
    )
    log = tmp_path / "attempts.jsonl"
    env = {**os.environ, "PYTHONPATH": str(code), "ATTEMPTS_LOG": str(log)}
    out = run_sweep(tmp_path / "r", "--no-report", config=config, env=env, check=False)
    assert out.returncode == 1, (out.stdout[-2000:], out.stderr[-2000:])
    cause = "ValueError: the user's own bug in epoch 2"
    assert f"1 failed; most often (all of them): {cause}" in out.stdout
    errors = [line for line in out.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, out.stderr[-3000:]  # (Ray's worker log lines may follow it)
    assert errors[0].startswith(f"error: every trial failed, most often with: {cause}")
    error_files = list((tmp_path / "r" / "buggy").glob("*/error.txt"))
    assert len(error_files) == 1
    for error in error_files:
        text = error.read_text()
        assert "buggy_train.py" in text and 'raise ValueError("the user' in text
    attempts = sorted(json.loads(line) for line in log.read_text().splitlines())
    # the trial ran twice: from scratch, then (Ray's retry) from the state of epoch 1
    assert attempts == [[16, 0, None], [16, 1, {"after_epoch": 1}]]
