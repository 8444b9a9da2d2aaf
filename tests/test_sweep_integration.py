"""End to end on a real local Ray: `python -m sweep` -> trial folders -> TensorBoard -> report."""

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from conftest import ROOT, free_port, run_sweep
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

from trainables.contract import METRIC_KEYS, PARAM_KEYS, PROVENANCE_KEYS

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def smoke_sweep(tmp_path_factory) -> tuple[Path, str]:
    """The smoke sweep, logging to MLflow too (its default store: mlruns/ in the results)."""
    storage = tmp_path_factory.mktemp("results")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    return storage / "smoke", run_sweep(storage, "--set", "loggers=[mlflow]", env=env).stdout


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
        tags = sorted(acc.Tags()["scalars"])
        # the curves under clear tags, first in TensorBoard's (alphabetical) order
        assert tags[:4] == ["acc/val", "loss/train", "loss/val", "lr"], tags
        assert all(t.startswith("ray/tune/") for t in tags[4:])
        assert {"ray/tune/epoch", "ray/tune/diverged"} <= set(tags)
        assert "ray/tune/val_loss" not in tags  # not twice
        steps = [e.step for e in acc.Scalars("loss/val")]
        result = [json.loads(r) for r in (trial / "result.json").read_text().splitlines()]
        assert steps == [r["examples_seen"] for r in result]
        assert [e.value for e in acc.Scalars("lr")] == pytest.approx([r["lr_now"] for r in result])
        hparams = {
            tag: HParamsPluginData.FromString(content)
            for tag, content in acc._plugin_to_tag_to_content["hparams"].items()
        }
        start = hparams["_hparams_/session_start_info"].session_start_info
        assert set(start.hparams) == {
            "batch_size",
            "lr",
            "warmup_epochs",
            "seed",
            "phase",
            "optimizer",
        }
        params = json.loads((trial / "params.json").read_text())
        assert start.hparams["batch_size"].number_value == params["batch_size"]
        assert start.hparams["phase"].string_value == "grid"
        metrics = {m.name.tag for m in hparams["_hparams_/experiment"].experiment.metric_infos}
        assert {"loss/val", "loss/train", "acc/val", "ray/tune/diverged"} <= metrics


def test_mlflow_holds_one_run_per_trial_with_its_params_and_curves(smoke_sweep, monkeypatch):
    exp, _ = smoke_sweep
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3's file store, opted in
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=(exp / "mlruns").as_uri())
    experiment = client.get_experiment_by_name("smoke")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id], max_results=100)
    trials = {t.name: json.loads((t / "params.json").read_text()) for t in trial_dirs(exp)}
    assert sorted(r.info.run_name for r in runs) == sorted(trials)
    for run in runs:
        params = trials[run.info.run_name]
        assert run.info.status == "FINISHED"
        assert float(run.data.params["lr"]) == pytest.approx(params["lr"])
        assert run.data.params["batch_size"] == str(params["batch_size"])
        history = client.get_metric_history(run.info.run_id, "val_loss")
        result = [json.loads(r) for r in (exp / run.info.run_name / "result.json").open()]
        assert [m.step for m in history] == [r["examples_seen"] for r in result]
        assert [m.value for m in history] == pytest.approx([r["val_loss"] for r in result])


def test_tensorboard_server_serves_every_trial(smoke_sweep):
    exp, _ = smoke_sweep
    port = free_port()
    tb = subprocess.Popen(  # as make tensorboard runs it
        [sys.executable, "-m", "sweep.serve", "tensorboard", "--logdir", str(exp)]
        + ["--port", str(port)],
        cwd=ROOT,
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
        assert all("loss/val" in runs[n] for n in names)
        # DNS rebinding: a page whose own name resolves to 127.0.0.1 is refused
        for host, status in ((f"127.0.0.1:{port}", 200), (f"rebound.example:{port}", 403)):
            req = urllib.request.Request(url, headers={"Host": host})
            try:
                with urllib.request.urlopen(req, timeout=10) as resp:
                    assert resp.status == status
            except urllib.error.HTTPError as err:
                assert err.code == status == 403
    finally:
        tb.terminate()
        tb.wait(timeout=30)
