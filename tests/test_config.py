"""Config loading, overrides, dry run, and bad input: exit 2, one line, nothing written."""

import importlib.metadata
import shutil
import subprocess
import sys

import pytest
from conftest import CONFIGS, ROOT

from sweep import space
from sweep.cli import main
from sweep.config import ConfigError, load_config

DEFAULT = str(CONFIGS / "default.yaml")
SMOKE = str(CONFIGS / "smoke.yaml")


def test_default_config_is_the_article_experiment():
    cfg = load_config(DEFAULT)
    assert cfg.dataset == "mnist5k" and cfg.model == "cnn1" and cfg.optimizer == "sgd"
    assert cfg.batch_sizes == [8, 16, 24, 32, 40, 48, 56]
    assert cfg.grid.base_lr == 0.001 and cfg.grid.base_batch_size == 8
    assert cfg.grid.warmup_epochs == [0.0, 1.0]


def test_set_takes_dotted_keys_and_yaml_values():
    cfg = load_config(
        DEFAULT, ["grid.base_lr=0.002", "batch_sizes=[8,16]", "epochs=3", "optuna.sampler=qmc"]
    )
    assert cfg.grid.base_lr == 0.002 and cfg.batch_sizes == [8, 16] and cfg.epochs == 3
    assert cfg.optuna.sampler == "qmc"


def test_dry_run_lists_every_grid_trial_with_resources_and_what_follows(capsys):
    assert main(["--config", DEFAULT, "--dry-run"]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if " grid " in line]
    assert len(rows) == 14
    assert "CPU 1" in rows[0]
    first = rows[0].split()
    assert first[2:6] == ["8", "0.001", "0", "0"]  # batch 8, lr 0.001, warmup 0, seed 0
    last = rows[-1].split()
    assert last[2:5] == ["56", "0.007", "1"]
    assert "56 Optuna trials" in out and "28 confirmation trials" in out


BAD_INPUTS = [
    (["--set", "batchsize=[8]"], "unknown config key 'batchsize': did you mean 'batch_sizes'"),
    (["--set", "grid.base_lr=-0.1"], "grid.base_lr must be a positive"),
    (["--set", "grid.base_lr=0"], "grid.base_lr must be a positive"),
    (["--set", "grid.base_lr=fast"], "grid.base_lr must be float"),
    (["--set", "epochs=2.5"], "epochs must be int"),
    (["--set", "batch_sizes=[0, 8]"], "batch_sizes: 0 is not a positive batch size"),
    (["--set", "batch_sizes=[8, 5000]"], "exceed the 4000 training examples"),
    (["--set", "grid.warmup_epochs=[9]"], "longer than the 5 training epochs"),
    (["--set", "dataset=mnist6k"], "unknown dataset 'mnist6k' (did you mean 'mnist5k'?)"),
    (["--set", "model=cnn2"], "unknown model 'cnn2'"),
    (["--set", "optimizer=adma"], "unknown optimizer 'adma' (did you mean 'adam'?)"),
    (["--set", "optuna.sampler=cmaes"], "unknown optuna.sampler 'cmaes'"),
    (["--set", "optuna.trails_per_batch_size=3"], "did you mean 'optuna.trials_per_batch_size'"),
    (["--config", "/nonexistent.yaml"], "does not exist"),
    (
        ["--set", "dataset=fashion_mnist", "--set", "data_dir=/nonexistent-data"],
        "python -m trainables.data fetch fashion_mnist",
    ),
]


@pytest.mark.parametrize(("args", "message"), BAD_INPUTS, ids=[a[-1] for a, _ in BAD_INPUTS])
def test_bad_input_is_one_clear_line_and_exit_2(args, message, tmp_path, capsys):
    storage = tmp_path / "results"
    argv = ["--config", DEFAULT, "--storage", str(storage), *args]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err
    assert len(err.splitlines()) == 1 and err.startswith("error: ")
    assert not storage.exists()  # nothing written


def test_yaml_that_does_not_parse_names_the_line(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nepochs: [1, 2\nseeds: 1\n")
    assert main(["--config", str(bad)]) == 2
    assert "not valid YAML at line" in capsys.readouterr().err


def test_unwritable_storage_is_refused_before_ray_starts(tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    if sys.platform != "win32" and __import__("os").geteuid() == 0:
        # root writes anywhere; a path under a regular file is unwritable for everyone
        blocker = tmp_path / "file"
        blocker.write_text("")
        locked = blocker / "sub"
    assert main(["--config", SMOKE, "--storage", str(locked)]) == 2
    assert "is not writable" in capsys.readouterr().err


def test_resume_with_nothing_to_resume_is_an_error(tmp_path, capsys):
    assert main(["--config", SMOKE, "--storage", str(tmp_path), "--resume"]) == 2
    assert "nothing to resume" in capsys.readouterr().err


def test_the_cli_prints_no_traceback_for_bad_input():
    out = subprocess.run(
        [sys.executable, "-m", "sweep", "--config", DEFAULT, "--set", "lr_multipliers=[1]"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert out.stderr.strip().startswith("error: unknown config key 'lr_multipliers'")


def test_config_error_is_a_value_error():
    with pytest.raises(ConfigError):
        load_config(DEFAULT, ["seeds=0"])


def test_the_code_version_is_the_packages_plus_this_checkouts_commit(tmp_path):
    version = space.code_version()
    package = importlib.metadata.version("lr-batch-sweep")
    assert version.startswith(f"{package}+") and len(version) > len(package) + 6
    for folder in ("sweep", "trainables"):  # a copy outside any git checkout
        shutil.copytree(ROOT / folder, tmp_path / folder)
    out = subprocess.run(
        [sys.executable, "-c", "from sweep.space import code_version; print(code_version())"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert out.stdout.strip() == package, out.stderr
