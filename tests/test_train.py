"""The training loop: behaviour a user would notice (no mocks; real torch training)."""

import math
from dataclasses import replace

import pytest
import torch

from trainables.contract import DEFAULT_DATA_DIR, TrainConfig, config_from_dict
from trainables.data import load_dataset
from trainables.models import get_model
from trainables.tensor_data import TensorData
from trainables.train import train

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def data() -> TensorData:
    return load_dataset("synthetic", "/nonexistent-not-needed")


def cfg(**kw) -> TrainConfig:
    return TrainConfig(**{"batch_size": 32, "lr": 0.05, "epochs": 2, "dataset": "synthetic", **kw})


def final_weights(c: TrainConfig, data: TensorData) -> torch.Tensor:
    model_state = list(train(c, data))[-1].state["model"]
    return torch.cat([v.flatten() for v in model_state.values()])


def initial_weights(c: TrainConfig, data: TensorData) -> torch.Tensor:
    torch.manual_seed(c.seed)
    model = get_model(c.model)(data.in_shape, data.num_outputs)
    return torch.cat([v.flatten() for v in model.state_dict().values()])


def test_lr_zero_leaves_the_weights_unchanged(data):
    c = cfg(lr=0.0)
    assert torch.equal(final_weights(c, data), initial_weights(c, data))


def test_displacement_grows_with_lr(data):
    start = initial_weights(cfg(), data)
    moves = [float((final_weights(cfg(lr=lr), data) - start).norm()) for lr in (0.01, 0.1)]
    assert moves[1] > 2 * moves[0]


def test_same_seed_gives_the_same_metrics_and_other_seed_does_not(data):
    a = [e.metrics for e in train(cfg(seed=3), data)]
    b = [e.metrics for e in train(cfg(seed=3), data)]
    c = [e.metrics for e in train(cfg(seed=4), data)]
    strip = lambda ms: [(m.train_loss, m.val_loss, m.val_acc) for m in ms]  # noqa: E731
    assert strip(a) == strip(b)
    assert strip(a) != strip(c)


def test_metrics_follow_the_contract(data):
    epochs = list(train(cfg(batch_size=100, epochs=3, warmup_epochs=1), data))
    assert [e.metrics.epoch for e in epochs] == [1, 2, 3]
    m = epochs[-1].metrics
    assert m.examples_seen == m.timesteps_total == 3 * 9 * 100  # 960 // 100 = 9 steps/epoch
    assert m.step == 27
    assert m.lr_now == pytest.approx(0.05)  # warmup over, constant
    assert epochs[0].metrics.lr_now == pytest.approx(0.05)  # warmup ends on epoch 1's last step
    assert not m.diverged and 0 <= m.val_acc <= 1


def test_training_learns_the_article_task():
    data = load_dataset("mnist5k", str(DEFAULT_DATA_DIR))
    m = list(train(TrainConfig(batch_size=32, lr=0.004, epochs=1, n_train=2000), data))[-1]
    assert m.metrics.val_acc > 0.7


def test_a_planted_nan_is_reported_as_diverged_and_training_stops(data):
    x = data.x_train.clone()
    x[5] = float("nan")
    poisoned = replace(data, x_train=x)
    epochs = list(train(cfg(epochs=5), poisoned))
    assert len(epochs) == 1
    assert epochs[0].metrics.diverged
    assert math.isnan(epochs[0].metrics.val_loss)


def test_an_exploding_loss_is_diverged(data):
    epochs = list(train(cfg(lr=50.0, epochs=5), data))
    assert epochs[-1].metrics.diverged
    assert len(epochs) < 5


def test_resume_from_an_epoch_state_continues_exactly(data):
    full = [e.metrics for e in train(cfg(epochs=3), data)]
    first = next(iter(train(cfg(epochs=3), data)))
    state = {k: (v.copy() if isinstance(v, dict) else v) for k, v in first.state.items()}
    rest = [e.metrics for e in train(cfg(epochs=3), data, resume=state)]
    assert [m.epoch for m in rest] == [2, 3]
    assert rest[-1].val_loss == pytest.approx(full[-1].val_loss, rel=1e-6)


def test_an_unknown_trial_key_fails_loudly():
    with pytest.raises(ValueError, match="unknown trial config key.*'batchsize'"):
        config_from_dict({"batchsize": 8, "lr": 0.1})


def test_batch_larger_than_the_data_is_refused(data):
    with pytest.raises(ValueError, match="exceeds"):
        list(train(cfg(batch_size=5000), data))
