"""The user's own model, data set and training function (no Ray): import paths, `params`, the
wrapper around a training function, the warmup helper, and bad input before Ray starts.

The user's code is a real module written to a temporary folder on the Python path.
"""

from __future__ import annotations

import json
import math
import re
import textwrap
import uuid
from pathlib import Path

import pytest
import torch
from conftest import ROOT

from sweep import preflight
from sweep.cli import main
from sweep.config import ConfigError, load_config
from sweep.failures import cause, summary
from trainables import user_code
from trainables.contract import METRIC_KEYS, TrainConfig
from trainables.data import load_dataset
from trainables.own_loop import Trial, TrialError, WarmupSchedule, run_own
from trainables.schedule import lr_at
from trainables.tensor_data import BadData, as_tensor_data
from trainables.train import train

torch.set_num_threads(1)

USER_CODE = '''
import math
import numpy as np
import torch
from torch import nn

CALLS = []

def data(data_dir=None):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 6, generator=g)
    y = (x[:, 0] + 0.3 * x[:, 1] > 0).long()
    return x[:160], y[:160], x[160:], y[160:], 2

def data_numpy_dict():
    x, y, xv, yv, k = data()
    return {"x_train": x.numpy(), "y_train": y.numpy(), "x_val": xv.numpy(),
            "y_val": yv.numpy(), "num_outputs": k}

def model(in_shape, num_outputs, hidden=8):
    return nn.Sequential(nn.Linear(in_shape[0], hidden), nn.ReLU(),
                         nn.Linear(hidden, num_outputs))

def wrong_width(in_shape, num_outputs):
    return nn.Linear(5, num_outputs)

def not_a_module(in_shape, num_outputs):
    return "a network"

def returns_list():
    return [1, 2, 3]

def broken_loader():
    raise FileNotFoundError("no such file: /data/train.npy")

def labels_out_of_range():
    x = torch.zeros(10, 3)
    return x, torch.arange(10), x, torch.arange(10), 5

NOT_CALLABLE = 3

def two_args(trial, other):
    pass

def run(trial):
    """Yields metrics and state; records what it was given."""
    CALLS.append(trial)
    w = trial.resume["w"] if trial.resume else torch.zeros(1)
    for epoch in range(trial.start_epoch + 1, trial.epochs + 1):
        w = w + trial.lr
        yield {"val_loss": 1.0 / epoch, "train_loss": 2.0 / epoch, "val_acc": 0.5,
               "grad_norm": torch.tensor(0.25)}, {"w": w}

def run_with_scheduler(trial):
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=trial.lr)
    sched = WarmupSchedule(opt, trial, steps_per_epoch=10)
    for epoch in range(trial.start_epoch + 1, trial.epochs + 1):
        for _ in range(10):
            opt.step()
            sched.step()
        yield {"val_loss": 1.0}

def reports(trial):
    for epoch in range(1, trial.epochs + 1):
        try:
            trial.report({"val_loss": 0.5, "step": 7 * epoch})
        except Exception:  # a user's broad except must not swallow the end of the trial
            raise AssertionError("swallowed")
    CALLS.append("returned")

def explodes(trial):
    CALLS.clear()
    try:
        for epoch in range(1, trial.epochs + 1):
            CALLS.append(epoch)
            yield {"val_loss": 1.0, "train_loss": 1.0 if epoch < 2 else float("nan")}
    finally:
        CALLS.append("closed")

def no_metric(trial):
    for epoch in range(1, trial.epochs + 1):
        yield {"loss": 1.0}

def too_short(trial):
    yield {"val_loss": 1.0}

def restarts(trial):
    for epoch in range(1, trial.epochs + 1):
        yield {"val_loss": 1.0, "epoch": epoch}, {"x": 1}

def numpy_state(trial):
    for epoch in range(1, trial.epochs + 1):
        yield {"val_loss": 1.0}, {"rng": np.random.get_state()}

def raises_in_epoch_2(trial):
    for epoch in range(1, trial.epochs + 1):
        if epoch == 2:
            raise ValueError("the user's own bug in epoch 2")
        yield {"val_loss": 1.0}

from trainables.own_loop import WarmupSchedule
'''


@pytest.fixture
def usercode(tmp_path, monkeypatch):
    """The name of a fresh module holding USER_CODE, importable for this test."""
    name = f"usercode_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(USER_CODE))
    (tmp_path / f"{name}_needs_missing.py").write_text("import not_installed_pkg_xyz\n")
    (tmp_path / f"{name}_broken.py").write_text("def f(:\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


def cfg(trainable: str, **kw) -> TrainConfig:
    return TrainConfig(**{"batch_size": 8, "lr": 0.1, "epochs": 3, "trainable": trainable, **kw})


def run(c: TrainConfig, resume=None) -> list[tuple[dict, dict | None]]:
    rows: list[tuple[dict, dict | None]] = []
    run_own(c, "cpu", resume, lambda m, s: rows.append((m, s)))
    return rows


# ---------------------------------------------------------------------------- import paths
@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("{m}_nope:f", "no module named '{m}_nope' on the Python path"),
        ("{m}:missing", "module '{m}' has no 'missing'; it has "),
        ("{m}:NOT_CALLABLE", "is a int, not a function"),
        ("{m}_needs_missing:f", "it imports 'not_installed_pkg_xyz', which is not installed"),
        ("{m}_broken:f", "importing '{m}_broken' failed: SyntaxError"),
        ("{m}.f", "is not an import path"),
    ],
)
def test_an_import_path_that_leads_nowhere_says_why_in_one_line(usercode, path, message):
    with pytest.raises(user_code.ImportPathError) as err:
        user_code.resolve("model", path.format(m=usercode))
    assert message.format(m=usercode) in str(err.value)
    assert "\n" not in str(err.value)


def test_params_reach_the_arguments_a_function_names(usercode):
    fn = user_code.resolve("model", f"{usercode}:model")
    assert user_code.accepted(fn, {"hidden": 3, "dropout": 0.1}) == {"hidden"}
    net = user_code.call(fn, (6,), 2, offered={"hidden": 3, "dropout": 0.1})
    assert net[0].out_features == 3


def test_a_data_set_may_be_tensors_numpy_a_dict_or_a_tuple(usercode):
    a = load_dataset(f"{usercode}:data", "/x")
    b = load_dataset(f"{usercode}:data_numpy_dict", "/x")
    assert a.in_shape == b.in_shape == (6,) and a.n_train == 160 and a.num_outputs == 2
    assert torch.equal(a.y_val, b.y_val) and b.x_train.dtype == torch.float32
    with pytest.raises(BadData, match="returned list"):
        as_tensor_data([1, 2, 3])
    x = torch.zeros(4, 2)
    with pytest.raises(BadData, match="one class index"):
        as_tensor_data((x, torch.zeros(4), x, torch.zeros(4), 2))
    with pytest.raises(BadData, match="holds 4 examples but y_val"):
        as_tensor_data((x, torch.zeros(4).long(), x, torch.zeros(3).long(), 2))
    regression = as_tensor_data((x, torch.zeros(4), x, torch.zeros(4), 1, "regression"))
    assert regression.task == "regression" and regression.y_train.dtype == torch.float32


def test_the_projects_loop_trains_a_model_and_data_set_given_by_import_path():
    model, dataset = "examples.digits.model:build", "examples.digits.data:load"
    data = load_dataset(dataset, "/x", params={"hidden": 32})
    c = TrainConfig(batch_size=16, lr=0.1, epochs=3, model=model, dataset=dataset)
    c32 = TrainConfig(**{**c.__dict__, "params": {"hidden": 32}})
    full = [e.metrics for e in train(c32, data)]
    assert full[-1].val_acc > 0.9 and full[-1].val_loss < full[0].val_loss
    first = next(iter(train(c32, data)))  # resumes exactly, as the registered models do
    rest = [e.metrics for e in train(c32, data, resume=first.state)]
    assert rest[-1].val_loss == pytest.approx(full[-1].val_loss, rel=1e-6)
    hidden = next(iter(train(c32, data))).state["model"]["1.weight"].shape[0]
    assert hidden == 32  # params reached build(hidden=...)


# ---------------------------------------------------------------------------- own loop
def test_a_training_function_gets_the_trial_and_its_epochs_complete_the_contract(usercode):
    rows = run(cfg(f"{usercode}:run", params={"width": 4}, warmup_epochs=1.0, seed=5))
    trial = __import__(usercode).CALLS[-1]
    assert isinstance(trial, Trial)
    assert (trial.batch_size, trial.lr, trial.warmup_epochs, trial.seed, trial.epochs) == (
        8,
        0.1,
        1.0,
        5,
        3,
    )
    assert trial.params == {"width": 4} and trial.resume is None and trial.start_epoch == 0
    assert [m["epoch"] for m, _ in rows] == [1, 2, 3]
    metrics, state = rows[-1]
    assert set(METRIC_KEYS) - {"timesteps_total"} <= set(metrics)
    assert metrics["val_loss"] == pytest.approx(1 / 3) and metrics["grad_norm"] == 0.25
    assert not metrics["diverged"] and math.isnan(metrics["examples_seen"])
    assert "timesteps_total" not in metrics  # unknown: TensorBoard falls back to the epoch
    assert state["own"]["epoch"] == 3 and torch.allclose(state["user"]["w"], torch.tensor(0.3))


def test_a_resumed_trial_gets_its_state_and_continues_from_the_next_epoch(usercode):
    rows = run(cfg(f"{usercode}:run"))
    resumed = run(cfg(f"{usercode}:run"), resume=rows[0][1])
    trial = __import__(usercode).CALLS[-1]
    assert trial.start_epoch == 1 and torch.allclose(trial.resume["w"], torch.tensor(0.1))
    assert [m["epoch"] for m, _ in resumed] == [2, 3]
    assert torch.allclose(resumed[-1][1]["user"]["w"], rows[-1][1]["user"]["w"])


def test_the_warmup_helper_is_the_projects_per_step_ramp_and_gives_the_axis(usercode):
    rows = run(cfg(f"{usercode}:run_with_scheduler", warmup_epochs=1.5, schedule="cosine"))
    assert [m["examples_seen"] for m, _ in rows] == [80, 160, 240]  # 10 steps x batch 8
    assert [m["timesteps_total"] for m, _ in rows] == [80, 160, 240]
    assert rows[-1][0]["step"] == 30
    assert rows[0][0]["lr_now"] == pytest.approx(lr_at(9, 0.1, 15, 30, "cosine"))
    trial = Trial(batch_size=8, lr=0.2, warmup_epochs=1, seed=0, epochs=3, phase="grid", params={})
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.2)
    sched = WarmupSchedule(opt, trial, steps_per_epoch=4)
    seen = []
    for _ in range(12):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert seen == pytest.approx([lr_at(s, 0.2, 4, 12) for s in range(12)])
    assert seen[0] == pytest.approx(0.05) and seen[3] == pytest.approx(0.2)
    later = Trial(**{**trial.__dict__, "start_epoch": 1, "_context": type(trial._context)()})
    assert WarmupSchedule(opt, later, 4).get_last_lr() == [pytest.approx(0.2)]


def test_a_function_may_report_instead_of_yielding(usercode):
    rows = run(cfg(f"{usercode}:reports", epochs=2))
    assert [(m["epoch"], m["step"], m["examples_seen"]) for m, _ in rows] == [
        (1, 7, 56),
        (2, 14, 112),
    ]
    assert rows[0][1] is None  # no state: nothing to checkpoint
    assert "returned" not in __import__(usercode).CALLS  # the last report() did not return


def test_a_nan_loss_is_diverged_the_trial_stops_and_the_generator_is_closed(usercode):
    rows = run(cfg(f"{usercode}:explodes", epochs=5))
    assert [m["diverged"] for m, _ in rows] == [False, True]
    assert __import__(usercode).CALLS == [1, 2, "closed"]


@pytest.mark.parametrize(
    ("function", "message"),
    [
        ("no_metric", "the metrics lack 'val_loss', the sweep's metric (got ['loss'])"),
        ("too_short", "ended after epoch 1 of 3"),
        ("restarts", None),
        ("numpy_state", "cannot be checkpointed and reloaded safely"),
    ],
)
def test_a_function_that_breaks_the_protocol_fails_with_the_fix(usercode, function, message):
    if function == "restarts":  # resumed at epoch 2, the function starts again at 1
        first = run(cfg(f"{usercode}:restarts"))[0][1]
        with pytest.raises(TrialError, match="reported epoch 1 where the trial is at epoch 2"):
            run(cfg(f"{usercode}:restarts"), resume=first)
        return
    with pytest.raises(TrialError, match=re.escape(message)):
        run(cfg(f"{usercode}:{function}"))


def test_the_users_own_exception_reaches_the_trial_unchanged(usercode):
    with pytest.raises(ValueError, match="the user's own bug in epoch 2"):
        run(cfg(f"{usercode}:raises_in_epoch_2"))


# ---------------------------------------------------------------------------- config, preflight
def write_config(tmp_path: Path, usercode: str, **extra: object) -> Path:
    doc = {
        "name": "own",
        "model": f"{usercode}:model",
        "dataset": f"{usercode}:data",
        "epochs": 1,
        "batch_sizes": [8, 16],
        "grid": {"base_lr": 0.1, "lr_multipliers": [1], "warmup_epochs": [0]},
        **extra,
    }
    path = tmp_path / "own.yaml"
    path.write_text(json.dumps(doc))  # JSON is YAML
    return path


BAD_OWN_INPUTS = [
    (["model={m}_nope:build"], "error: model '{m}_nope:build': no module named '{m}_nope'"),
    (["model={m}:buld"], "module '{m}' has no 'buld'"),
    (["model={m}:NOT_CALLABLE"], "is a int, not a function"),
    (["model={m}:1st"], "is not an import path"),
    (["dataset={m}:returns_list"], "dataset '{m}:returns_list' returned list; return a"),
    (["dataset={m}:broken_loader"], "dataset '{m}:data' failed"),
    (["dataset={m}:labels_out_of_range"], "outside 0..4 (num_outputs=5)"),
    (["model={m}:wrong_width"], "fails on a first batch of 8 examples of '{m}:data'"),
    (["model={m}:not_a_module"], "returned str, not a torch.nn.Module"),
    (["model=cnn1"], "model 'cnn1' cannot be built for inputs of shape (6,) and 2 outputs"),
    (["params.hiden=4"], "params ['hiden'] are not arguments of {m}:model"),
    (["batch_sizes=[8, 500]"], "batch_sizes [500] exceed the 160 training examples"),
    (["trainable={m}:two_args"], "cannot be called with one argument (the trial)"),
    (["trainable={m}_nope:run"], "no module named '{m}_nope'"),
    (["params.lr=0.1"], "params.lr: 'lr' is set by the sweep for every trial"),
    (["params.weight_decay=0.1"], "set it at the top level of the config"),
]


@pytest.mark.parametrize(("sets", "message"), BAD_OWN_INPUTS, ids=[m for _, m in BAD_OWN_INPUTS])
def test_bad_own_code_is_one_line_and_exit_2_before_ray_starts(
    usercode, tmp_path, capsys, sets, message
):
    extra: dict = {}
    if any(s.startswith("trainable=") for s in sets):  # a trainable brings its own model
        extra = {"model": "cnn1", "dataset": "mnist5k"}
    config = write_config(tmp_path, usercode, **extra)
    if "broken_loader" in sets[0]:
        message = "dataset '{m}:broken_loader' failed: FileNotFoundError: no such file"
    storage = tmp_path / "results"
    argv = ["--config", str(config), "--storage", str(storage)]
    for s in sets:
        argv += ["--set", s.format(m=usercode)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message.format(m=usercode) in err, err
    assert len(err.splitlines()) == 1 and err.startswith("error: ")
    assert not storage.exists()


def test_good_own_code_passes_preflight_and_ships_only_what_is_not_installed(usercode, tmp_path):
    config = load_config(write_config(tmp_path, usercode, params={"hidden": 4}))
    preflight.check(config)
    assert preflight.runtime_env(config) == {"py_modules": [str(tmp_path / f"{usercode}.py")]}
    digits = load_config(ROOT / "examples" / "digits" / "sweep.yaml")
    assert preflight.runtime_env(digits) == {"py_modules": [str(ROOT / "examples")]}
    assert preflight.runtime_env(load_config(ROOT / "sweep/configs/smoke.yaml")) == {}
    assert user_code.ray_modules(["torch.nn:Linear", "trainables.models:cnn1"]) == []


def test_the_config_keeps_its_strict_keys_and_checks_params_and_trainable():
    smoke = ROOT / "sweep/configs/smoke.yaml"
    cfg_ = load_config(smoke, ["params.hidden=8", "params.note=text"])
    assert cfg_.params == {"hidden": 8, "note": "text"}
    with pytest.raises(ConfigError, match="unknown config key 'parms'"):
        load_config(smoke, ["parms.hidden=8"])
    with pytest.raises(ConfigError, match="setting of the project's own training loop"):
        load_config(smoke, ["trainable=my.train:run"])  # smoke.yaml sets dataset: synthetic
    ok = load_config(smoke, ["trainable=my.train:run", "dataset=mnist5k", "model=cnn1"])
    with pytest.raises(ConfigError, match="params key must be str"):
        load_config(smoke, ["params={1: 2}"])
    from sweep.space import grid_trials

    trial = grid_trials(ok)[0]
    assert (trial["trainable"], trial["model"], trial["dataset"]) == ("my.train:run", "", "")
    assert trial["metric"] == "val_loss" and trial["params"] == {}


def test_params_without_a_reader_are_refused():
    cfg_ = load_config(ROOT / "sweep/configs/smoke.yaml", ["params.hidden=8"])
    with pytest.raises(ConfigError, match="nothing reads them"):
        preflight.check(cfg_)


def test_the_summary_names_the_exception_that_ended_the_trials():
    ray_text = (
        "Failure # 1 (occurred at 2026-12-03)\n"
        "\x1b[36mray::ImplicitFunc.train()\x1b[39m (pid=1, ip=1.2.3.4)\n"
        '  File "/x/train.py", line 9, in run\n'
        "    raise ValueError('boom')\n"
        "ValueError: boom in epoch 2\n"
    )
    assert cause(ray_text) == "ValueError: boom in epoch 2"
    own = "Traceback...\ntrainables.own_loop.TrialError: epoch 1: the metrics lack 'val_loss'"
    assert cause(own).startswith("trainables.own_loop.TrialError: epoch 1")
    assert summary([ray_text, ray_text, own]) == (
        "3 failed; most often (2 of them): ValueError: boom in epoch 2"
    )
    assert summary([]) == ""
