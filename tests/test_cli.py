"""The command line: configs by name (bundled, also in an installed copy), --help, --print-config,
--version, and how a sweep ends: failed trials counted with their most common cause, and a
report that cannot be written: exit 1, the cause named."""

import importlib.metadata
import os
import shutil
import subprocess
import sys
import textwrap
from dataclasses import asdict

import pytest
from conftest import ROOT, run_sweep

from sweep.cli import bundled_configs, describe, main
from sweep.config import load_config


def test_a_bundled_config_is_found_by_its_name(capsys):
    for name in ("mnist", "mnist.yaml"):
        assert main(["--config", name, "--print-config"]) == 0
        out = capsys.readouterr().out
        assert out.startswith(f"# {ROOT / 'sweep' / 'configs' / 'mnist.yaml'} ")
        assert "\ndataset: mnist\n" in out
    assert main(["--config", "smoke", "--dry-run"]) == 0
    assert "sweep 'smoke'" in capsys.readouterr().out


def test_an_unknown_name_is_one_line_with_the_closest_bundled_one(tmp_path, capsys):
    assert main(["--config", "mnst", "--storage", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: config 'mnst' is neither a file nor a bundled config")
    assert "(did you mean 'mnist'?)" in err and "default, mnist" in err
    assert len(err.splitlines()) == 1 and not (tmp_path / "r").exists()


def test_help_lists_every_bundled_config_the_examples_and_the_defaults(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    configs = bundled_configs()
    assert set(configs) >= {"default", "smoke", "mnist", "adam", "momentum", "quadratic"}
    for name, path in configs.items():
        assert f"  {name:<10} {describe(load_config(path))}" in out
    assert (
        "  default    mnist5k / cnn1 / sgd; B 8-1024 (8); 5 ep; 14 grid + adaptive (at most 250 "
        "trials or 11 minutes)"
    ) in out
    assert "examples:" in out and "python -m sweep --config smoke --dry-run" in out
    assert "(default: default)" in out and "(default: results)" in out
    assert "exit codes:" in out


def test_print_config_reads_back_to_the_same_sweep(tmp_path, capsys):
    args = ["--config", "default", "--set", "epochs=3", "--set", "grid.base_lr=2e-3"]
    assert main([*args, "--name", "mine", "--seed", "7", "--print-config"]) == 0
    printed = tmp_path / "printed.yaml"
    printed.write_text(capsys.readouterr().out)
    again = load_config(printed)
    wanted = load_config(ROOT / "sweep/configs/default.yaml", ["epochs=3", "grid.base_lr=2e-3"])
    assert asdict(again) == {**asdict(wanted), "name": "mine", "seed": 7}
    assert not (ROOT / "results" / "mine").exists()  # printed, nothing run


def test_version_names_the_package_and_its_version(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    out = capsys.readouterr().out.strip()
    assert out.startswith(
        f"python -m sweep (lr-batch-sweep) {importlib.metadata.version('lr-batch-sweep')}"
    )


@pytest.mark.slow
def test_an_installed_copy_outside_the_repository_finds_its_bundled_configs(tmp_path):
    """pip installs the package (not editable) into a folder; run from elsewhere, --config smoke
    is the installed copy's file (package data), not the repository's."""
    site = tmp_path / "site"
    build = tmp_path / "src"  # a copy, so the build leaves nothing in the repository
    shutil.copytree(
        ROOT,
        build,
        ignore=shutil.ignore_patterns(".git", ".venv", "results", "*.egg-info", "build", "tests"),
    )
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation"]
    out = subprocess.run(
        [*pip, "--target", str(site), str(build)], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site)}
    cmd = [sys.executable, "-m", "sweep", "--config", "smoke", "--print-config"]
    out = subprocess.run(cmd, cwd=elsewhere, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.startswith(f"# {site / 'sweep' / 'configs' / 'smoke.yaml'} ")
    assert "\nname: smoke\n" in out.stdout


HALF_BROKEN = """
from pathlib import Path

from trainables.own_loop import Trial


def run(trial: Trial):
    if trial.batch_size == 32:
        raise ValueError("no kernel for batch 32 in the user's code")
    Path(trial.params["block"]).write_text("a file where the report folder goes")
    yield {"val_loss": 1.0 / trial.lr}
"""


@pytest.mark.integration
@pytest.mark.slow
def test_some_failed_trials_are_counted_and_a_report_that_cannot_be_written_exits_1(tmp_path):
    """Batch 32 fails (the closing line counts it and names the cause; alone, exit code 0);
    batch 8's code leaves a file where the report folder goes, so the report fails: exit 1."""
    code = tmp_path / "code"
    code.mkdir()
    (code / "half_broken.py").write_text(textwrap.dedent(HALF_BROKEN))
    storage = tmp_path / "r"
    exp = storage / "half"
    config = tmp_path / "half.yaml"
    config.write_text(
        "name: half\ntrainable: half_broken:run\nepochs: 1\nbatch_sizes: [8, 32]\n"
        f"max_failures: 0\nparams: {{block: '{exp / 'report'}'}}\n"
        "grid: {base_lr: 0.1, lr_multipliers: [1], warmup_epochs: [0]}\n"
    )
    env = {**os.environ, "PYTHONPATH": str(code)}
    out = run_sweep(storage, config=config, env=env, check=False)
    cause = "ValueError: no kernel for batch 32 in the user's code"
    assert f"1 failed; most often (all of them): {cause} (see their error.txt)" in out.stdout
    assert out.returncode == 1, (out.stdout[-2000:], out.stderr[-2000:])
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("error: the trials ran, but no report could be written: ")
    assert "File exists" in last and f"--results {exp}" in last
    assert "report:      not written" in out.stdout
    assert (exp / "report").is_file() and not (exp / "fit.json").exists()
