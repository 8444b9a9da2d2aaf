"""The measurement keys (measure_noise_scale, target) from YAML to the trial, and
steps-to-target in the training loop."""

import math
from dataclasses import replace

import pytest
import torch
from conftest import CONFIGS

from sweep import space
from sweep.cli import main
from sweep.config import load_config
from trainables.contract import TrainConfig, config_from_dict
from trainables.data import load_dataset
from trainables.train import crossing_step, train

torch.set_num_threads(1)


def test_the_new_configs_load_and_reach_every_trial():
    adam = load_config(CONFIGS / "adam.yaml")
    mom = load_config(CONFIGS / "momentum.yaml")
    assert adam.optimizer == "adam" and mom.optimizer == "momentum" and mom.momentum == 0.9
    for cfg in (adam, mom):
        assert cfg.measure_noise_scale and cfg.target.metric == "val_acc"
        assert (cfg.dataset, cfg.model, cfg.batch_sizes) == (
            "mnist5k",
            "cnn1",
            [8, 16, 24, 32, 40, 48, 56],
        )
        for trial in space.grid_trials(cfg):
            t = config_from_dict(trial)  # the trainable accepts every key
            assert t.measure_noise_scale and (t.target_metric, t.target_value) == ("val_acc", 0.93)
    # the linear-rule grid is still Adam's starting grid
    assert [t["lr"] for t in space.grid_trials(adam)][::2] == pytest.approx(
        [0.001 * b / 8 for b in adam.batch_sizes]
    )


def test_off_unless_configured_and_set_turns_them_on_or_off():
    bare = load_config(CONFIGS / "smoke.yaml")
    assert not bare.measure_noise_scale and bare.target is None
    trial = space.grid_trials(bare)[0]
    assert trial["measure_noise_scale"] is False and trial["target_metric"] == ""
    on = load_config(CONFIGS / "smoke.yaml", ["measure_noise_scale=true", "target.value=0.9"])
    assert on.measure_noise_scale and on.target.metric == "val_acc" and on.target.value == 0.9
    default = load_config(CONFIGS / "default.yaml")  # the default sweep measures both
    assert default.measure_noise_scale and default.target.value == 0.93
    off = load_config(CONFIGS / "adam.yaml", ["target=null"])
    assert off.target is None and space.grid_trials(off)[0]["target_metric"] == ""


@pytest.mark.parametrize(
    "override, message",
    [
        (
            "target.metric=val_accuracy",
            "unknown target.metric 'val_accuracy' (did you mean 'val_acc'?)",
        ),
        ("target.valeu=0.9", "unknown config key 'target.valeu': did you mean 'target.value'"),
        ("target=0.97", "'target.' must be a mapping"),
        ("measure_noise_scale=maybe", "measure_noise_scale must be bool"),
    ],
)
def test_bad_values_fail_before_anything_starts(override, message, capsys):
    assert main(["--config", str(CONFIGS / "default.yaml"), "--set", override, "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


def test_an_accuracy_target_above_one_and_a_negative_loss_target_are_refused(capsys):
    assert (
        main(["--config", str(CONFIGS / "default.yaml"), "--set", "target.value=1.5", "--dry-run"])
        == 2
    )
    assert "target.value 1.5 is not an accuracy in (0, 1]" in capsys.readouterr().err
    assert (
        main(
            [
                "--config",
                str(CONFIGS / "default.yaml"),
                "--set",
                "target.metric=val_loss",
                "--set",
                "target.value=-1",
                "--dry-run",
            ]
        )
        == 2
    )
    assert "must be a positive loss" in capsys.readouterr().err


def test_dry_run_says_what_the_trials_measure(capsys):
    assert main(["--config", str(CONFIGS / "adam.yaml"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "gradient noise scale" in out and "steps to val_acc >= 0.93" in out


# ---------------------------------------------------------------- steps-to-target in the loop
@pytest.fixture(scope="module")
def data():
    return load_dataset("synthetic", "/nonexistent-not-needed")


def run(data, **kw):
    cfg = TrainConfig(**{"batch_size": 32, "lr": 0.05, "epochs": 4, "dataset": "synthetic", **kw})
    return [e.metrics for e in train(cfg, data)]


def test_steps_to_target_interpolates_the_crossing_between_evaluations(data):
    plain = run(data)
    accs = [m.val_acc for m in plain]
    target = (accs[0] + max(accs)) / 2  # reached after the first epoch, not before
    reach = next(i for i, a in enumerate(accs) if a >= target)
    ms = run(data, target_metric="val_acc", target_value=target)
    assert [m.val_acc for m in ms] == accs  # a target changes nothing else
    expected = crossing_step(reach * 30, 30, accs[reach - 1], accs[reach], target)
    assert reach * 30 < expected <= (reach + 1) * 30  # 960 // 32 = 30 steps per epoch
    for i, m in enumerate(ms):
        if i < reach:
            assert math.isnan(m.steps_to_target)
        else:
            assert m.steps_to_target == pytest.approx(expected)
    losses = [m.val_loss for m in plain]
    by_loss = run(data, target_metric="val_loss", target_value=losses[1] + 1e-9)
    assert by_loss[-1].steps_to_target == pytest.approx(60, abs=1e-3) == by_loss[1].steps_to_target


def test_the_crossing_is_interpolated_linearly():
    assert crossing_step(30, 30, 0.80, 0.90, 0.85) == pytest.approx(45)  # halfway
    assert crossing_step(30, 30, 0.80, 0.90, 0.90) == pytest.approx(60)  # at the evaluation
    assert crossing_step(0, 30, math.nan, 0.9, 0.5) == 30  # nothing before: the evaluation
    assert crossing_step(0, 30, 2.0, 1.0, 1.5) == pytest.approx(15)  # a loss falling to 1.5


def test_an_unreached_target_stays_nan_and_no_target_is_nan(data):
    assert all(
        math.isnan(m.steps_to_target)
        for m in run(data, target_metric="val_acc", target_value=1.0, epochs=2)
    )
    assert all(math.isnan(m.steps_to_target) for m in run(data, epochs=2))


def test_a_resumed_trial_keeps_its_steps_to_target(data):
    cfg = TrainConfig(
        batch_size=32,
        lr=0.05,
        epochs=3,
        dataset="synthetic",
        target_metric="val_acc",
        target_value=0.01,
    )
    first = next(iter(train(cfg, data)))
    assert first.metrics.steps_to_target == 0  # the untrained model already meets it
    rest = [e.metrics for e in train(cfg, data, resume=first.state)]
    assert [m.steps_to_target for m in rest] == [0, 0]
    # a target crossed in the second epoch: the resumed run interpolates from the first
    # epoch's value, kept in the state
    plain = [e.metrics for e in train(replace(cfg, target_value=1.0), data)]
    target = (plain[0].val_acc + plain[1].val_acc) / 2
    cfg2 = replace(cfg, target_value=target)
    if plain[1].val_acc > plain[0].val_acc:
        first = next(iter(train(cfg2, data)))
        rest = [e.metrics for e in train(cfg2, data, resume=first.state)]
        assert rest[0].steps_to_target == pytest.approx(45)


def test_an_unknown_target_metric_fails_loudly(data):
    with pytest.raises(ValueError, match="unknown target_metric 'accuracy'"):
        run(data, target_metric="accuracy", target_value=0.9)
