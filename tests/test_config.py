"""Config loading, overrides, dry run, and bad input: exit 2, one line, nothing written."""

import importlib.metadata
import importlib.util
import json
import os
import shutil
import subprocess
import sys

import pytest
from conftest import CONFIGS, ROOT

from sweep import space
from sweep.cli import main
from sweep.cluster import NodeInfo, check_fits, local_nodes
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
    # the adaptive part is described with its budget, not listed
    assert (
        "design loop (design: adaptive) over batch sizes [8, 16, 32, 64, 128, 256, 512, 1024]"
        in out
    )
    assert "at most 250 trials or 11 minutes" in out
    fixed = ["--set", "design=fixed", "--set", "optuna.trials_per_batch_size=8"]
    assert (
        main(
            ["--config", DEFAULT, *fixed, "--set", "confirm={top_k: 2, seeds: 2}"] + ["--dry-run"]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "56 Optuna trials" in out and "28 confirmation trials" in out
    # per study: 8 + 2 brackets -> 15 -> 22 after two widenings: 14 more, x 7 batch sizes
    assert "total: 98 trials planned (14 grid, 56 optuna, 28 confirm) + up to 98 more " in out


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
    (["--config", "/dev/null"], "is not a regular file"),
    (["--set", "grid.base_lr=.inf"], "grid.base_lr must be a finite number, got inf"),
    (["--set", "optuna.lr_range_decades=.inf"], "optuna.lr_range_decades must be a finite"),
    (["--set", "momentum=.nan"], "momentum must be a finite number, got nan"),
    (
        [
            "--set",
            "design=fixed",
            "--set",
            "optuna={trials_per_batch_size: 8, max_widenings: 1000}",
        ],
        "outside floating point's range",
    ),
    (["--set", "grid.base_lr=1e-300"], "outside floating point's range"),
    (["--name", "x" * 300], "has 300 characters; use at most 100"),
    (["--name", "two\nlines"], "no control characters"),
    (["--set", "seeds=1000000000"], "the grid alone would run 14,000,000,000 trials"),
    (["--set", "epochs=" + "9" * 30], "epochs: a number of 30 digits is too large"),
    (["--set", "epochs=" + "9" * 5000], "a number too long"),
    (["--set", "grid={base_lr: 0.1, base_lr: 0.2}"], "repeats the key 'base_lr'"),
    (["--set", "resources.cpu_per_trial=100"], "cpu_per_trial=100, but the largest node of"),
    (["--set", "loggers=[neptune]"], "unknown loggers entry 'neptune'; choose from mlflow"),
    (["--set", "loggers=[mlflow, mlflow]"], "loggers has duplicates"),
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


def test_numbers_in_scientific_notation_are_floats_as_in_yaml_1_2(tmp_path):
    """YAML 1.1 (PyYAML) reads 1e-3 as text; every config file and --set reads it as 0.001."""
    path = tmp_path / "sci.yaml"
    path.write_text("grid: {base_lr: 1e-3, lr_multipliers: [5E-1, 1, 2e+0]}\nmomentum: .5\n")
    cfg = load_config(path, ["weight_decay=1e-4"])
    assert cfg.grid.base_lr == 0.001 and cfg.grid.lr_multipliers == [0.5, 1.0, 2.0]
    assert cfg.weight_decay == 0.0001 and cfg.momentum == 0.5
    assert load_config(DEFAULT, ["params={tag: 1e3x}"]).params == {"tag": "1e3x"}  # text stays


def _alias_bomb() -> str:
    """412 bytes of YAML that expand to 9^9 (387 million) values."""
    lines = ["name: bomb", "params:", "  a0: &a0 [1, 1, 1, 1, 1, 1, 1, 1, 1]"]
    for i in range(1, 9):
        lines.append(f"  a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


BAD_FILES = [
    ("empty", b"", "is empty; write the keys to change"),
    ("comments only", b"# nothing here\n", "is empty"),
    ("duplicate key", b"name: a\nepochs: 2\nname: b\n", "repeats the key 'name' (line 3)"),
    ("nested duplicate", b"grid:\n  base_lr: 0.1\n  base_lr: 0.2\n", "repeats the key 'base_lr'"),
    ("random bytes", bytes(range(256)) * 8, "is not a text file"),
    ("ELF header", b"\x7fELF\x02\x01\x01\x00" + b"\x00" * 56, "is not"),
    ("UTF-16", "name: x\n".encode("utf-16"), "is not a text file"),
    ("NUL in text", b"name: x\x00\n", "is not valid YAML"),
    ("a list", b"- 1\n- 2\n", "must hold a mapping of keys"),
    ("alias bomb", _alias_bomb().encode(), "more than 10,000 values once its YAML aliases"),
    ("deep nesting", b"params: " + b"[" * 5000, "nests too deeply"),
    ("over 1 MiB", b"# " + b"x" * (1 << 20) + b"\n", "larger than 1 MiB"),
]


@pytest.mark.parametrize(
    ("content", "message"), [b[1:] for b in BAD_FILES], ids=[b[0] for b in BAD_FILES]
)
def test_bad_config_files_are_one_line_and_exit_2(content, message, tmp_path, capsys):
    path = tmp_path / "sweep.yaml"
    path.write_bytes(content)
    storage = tmp_path / "results"
    assert main(["--config", str(path), "--storage", str(storage)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err, err
    assert len(err.splitlines()) == 1 and err.startswith("error: ")
    assert not storage.exists()


def test_a_fifo_as_config_file_is_refused_without_blocking(tmp_path, capsys):
    fifo = tmp_path / "sweep.yaml"
    os.mkfifo(fifo)  # opening it for reading would wait for a writer forever
    assert main(["--config", str(fifo), "--storage", str(tmp_path / "r")]) == 2
    assert "is not a regular file" in capsys.readouterr().err


def test_a_trial_larger_than_any_node_is_refused(tmp_path):
    cfg = load_config(SMOKE, ["resources.cpu_per_trial=100"])
    with pytest.raises(ConfigError, match=r"cpu_per_trial=100, but the largest node .* has"):
        check_fits(cfg, local_nodes(), "this machine")
    cfg = load_config(SMOKE, ["resources.gpu_per_trial=1"])
    two_cpus = (NodeInfo("n", "10.0.0.1", 2.0, 0.0),)
    with pytest.raises(ConfigError, match=r"gpu_per_trial=1, but .* 0 GPUs"):
        check_fits(cfg, two_cpus, "the cluster")
    check_fits(load_config(SMOKE, ["resources.cpu_per_trial=2"]), two_cpus, "the cluster")


@pytest.mark.skipif(importlib.util.find_spec("wandb") is not None, reason="wandb installed")
def test_a_tracker_whose_package_is_missing_is_refused_before_ray_starts(tmp_path, capsys):
    argv = ["--config", SMOKE, "--storage", str(tmp_path / "r"), "--set", "loggers=[wandb]"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        "error: loggers: 'wandb' needs the wandb package, which is not installed; "
        "pip install 'lr-batch-sweep[wandb]' (or remove wandb from loggers)"
    )


def test_adding_a_tracker_does_not_make_a_sweep_a_different_one(tmp_path):
    """A sweep started without `loggers` (or before the key existed) resumes with one."""
    from dataclasses import asdict

    from sweep.runner import CONFIG_FILE, decide_start

    exp = tmp_path / "smoke"
    exp.mkdir()
    saved = {k: v for k, v in asdict(load_config(SMOKE)).items() if k != "loggers"}
    (exp / CONFIG_FILE).write_text(json.dumps(saved))
    assert decide_start(load_config(SMOKE, ["loggers=[mlflow]"]), exp, "auto") == "resume"
    with pytest.raises(ConfigError, match="different config"):
        decide_start(load_config(SMOKE, ["epochs=3"]), exp, "auto")


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


@pytest.mark.parametrize(
    "storage, why",
    [
        ("/proc/not_writable", "No such file or directory"),  # os.access says yes to root
        ("/dev/null/results", "Not a directory"),
        ("{tmp}/" + "n" * 300, "File name too long"),
    ],
    ids=["/proc", "under a device", "300 characters"],
)
def test_storage_that_cannot_be_created_is_one_line_before_ray_starts(
    storage, why, tmp_path, capsys
):
    storage = storage.format(tmp=tmp_path)
    assert main(["--config", SMOKE, "--storage", storage]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: storage path '{storage}' is not writable ({why}")
    assert len(err.splitlines()) == 1 and "--storage" in err


def test_the_storage_probe_leaves_nothing_behind(tmp_path, capsys):
    storage = tmp_path / "a" / "b"
    assert main(["--config", SMOKE, "--storage", str(storage), "--resume"]) == 2
    assert "nothing to resume" in capsys.readouterr().err  # refused after the probe ...
    assert not (tmp_path / "a").exists()  # ... which created a/b, wrote, and removed both


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
