"""End to end on a real local Ray: `python -m sweep` -> trial folders -> TensorBoard -> report."""

import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import free_port, run_sweep
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from trainables.contract import METRIC_KEYS, PARAM_KEYS, PROVENANCE_KEYS

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def smoke_sweep(tmp_path_factory) -> tuple[Path, str]:
    storage = tmp_path_factory.mktemp("results")
    return storage / "smoke", run_sweep(storage).stdout


def trial_dirs(exp: Path) -> list[Path]:
    return sorted(p.parent for p in exp.glob("*/params.json"))


def test_every_grid_trial_ran_once_with_the_contract_keys(smoke_sweep):
    exp, stdout = smoke_sweep
    trials = trial_dirs(exp)
    assert len(trials) == 12  # 2 batch sizes x 3 lrs x 2 warmups
    configs = [json.loads((t / "params.json").read_text()) for t in trials]
    assert len({(c["batch_size"], c["lr"], c["warmup_epochs"]) for c in configs}) == 12
    for c in configs:
        assert set(c) == set(PARAM_KEYS)
        assert c["phase"] == "grid"
    rows = [json.loads(line) for line in (trials[0] / "result.json").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    assert set(METRIC_KEYS) | set(PROVENANCE_KEYS) <= set(rows[-1])
    assert rows[-1]["timesteps_total"] == rows[-1]["examples_seen"]
    assert "[sweep 12/12]" in stdout  # progress: trials done of total


def test_the_report_is_written_from_the_results(smoke_sweep):
    exp, stdout = smoke_sweep
    report = exp / "report"
    assert (report / "report.md").is_file() and (report / "report.html").is_file()
    assert list((report / "figures").glob("*.png"))
    fit = json.loads((report / "fit.json").read_text())
    assert {"metric", "best_lr", "power_law", "models", "best_model", "verdict"} <= set(fit)
    assert {b["batch_size"] for b in fit["best_lr"]} == {8, 32}
    assert "report:" in stdout and "tensorboard" in stdout


def test_tensorboard_event_files_hold_every_trials_curves_against_examples_seen(smoke_sweep):
    exp, _ = smoke_sweep
    for trial in trial_dirs(exp):
        acc = EventAccumulator(str(trial))
        acc.Reload()
        tags = acc.Tags()["scalars"]
        for tag in (
            "ray/tune/train_loss",
            "ray/tune/val_loss",
            "ray/tune/val_acc",
            "ray/tune/lr_now",
        ):
            assert tag in tags
        steps = [e.step for e in acc.Scalars("ray/tune/val_loss")]
        result = (trial / "result.json").read_text().splitlines()
        assert steps == [json.loads(r)["examples_seen"] for r in result]
        assert "hparams" in acc._plugin_to_tag_to_content  # HParams view


def test_tensorboard_server_serves_every_trial(smoke_sweep):
    exp, _ = smoke_sweep
    port = free_port()
    tb = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "tensorboard"),
            "--logdir",
            str(exp),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        runs: dict = {}
        deadline = time.time() + 60
        while time.time() < deadline and len(runs) < 12:
            try:
                url = f"http://127.0.0.1:{port}/data/plugin/scalars/tags"
                with urllib.request.urlopen(url, timeout=5) as resp:
                    runs = json.loads(resp.read())
            except OSError:
                pass
            time.sleep(1)
        names = {t.name for t in trial_dirs(exp)}
        assert names <= set(runs), f"missing runs: {names - set(runs)}"
        assert all("ray/tune/val_loss" in runs[n] for n in names)
    finally:
        tb.terminate()
        tb.wait(timeout=30)
