"""The gradient noise scale: the two-batch estimator against exact values, and in the loop.

Known answer (linear regression of trainables.quadratic): per-example gradient
g = x (x.e - eps) with e = w - w*, x ~ N(0, diag(h)), eps ~ N(0, sigma^2). Then G = H e and
E[g g^T] = 2 H e e^T H + (e^T H e) H + sigma^2 H (Gaussian fourth moments), so
|G|^2 = |He|^2 and tr(Sigma) = |He|^2 + (e^T H e) tr(H) + sigma^2 tr(H).
"""

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from trainables.contract import TrainConfig
from trainables.data import load_dataset
from trainables.noise_scale import NoiseScaleEMA, ema_decay, g2_estimate, trace_estimate
from trainables.quadratic import QUADRATIC
from trainables.train import train

torch.set_num_threads(1)


def exact_g2_and_trace(e: np.ndarray, h: np.ndarray, sigma: float) -> tuple[float, float]:
    he = h * e
    return float(he @ he), float(he @ he + (e @ he) * h.sum() + sigma**2 * h.sum())


def draw_batch_grad_sq(e, h, sigma, batch, reps, rng) -> np.ndarray:
    """|G_B|^2 of `reps` independent mini-batches of `batch` fresh examples."""
    x = rng.normal(size=(reps, batch, len(h))) * np.sqrt(h)
    eps = sigma * rng.normal(size=(reps, batch))
    g = x * (x @ e - eps)[..., None]
    return (g.mean(axis=1) ** 2).sum(axis=1)


@pytest.fixture(scope="module")
def draws():
    """Many (|G_small|^2, |G_big|^2) pairs at fixed weights w = w*/2, and the exact answer."""
    rng = np.random.default_rng(0)
    h, sigma = QUADRATIC.curvatures(), QUADRATIC.sigma
    e = -0.5 * QUADRATIC.w_star()
    small = draw_batch_grad_sq(e, h, sigma, 8, 6000, rng)
    big = draw_batch_grad_sq(e, h, sigma, 64, 6000, rng)
    return small, big, exact_g2_and_trace(e, h, sigma)


def test_the_exact_trace_formula_matches_the_per_example_gradient_variance():
    rng = np.random.default_rng(1)
    h, sigma = QUADRATIC.curvatures(), QUADRATIC.sigma
    e = -0.5 * QUADRATIC.w_star()
    x = rng.normal(size=(400_000, len(h))) * np.sqrt(h)
    g = x * (x @ e - sigma * rng.normal(size=400_000))[:, None]
    g2, trace = exact_g2_and_trace(e, h, sigma)
    assert float(g.var(axis=0).sum()) == pytest.approx(trace, rel=0.02)
    assert float((g.mean(axis=0) ** 2).sum()) == pytest.approx(g2, rel=0.05)


def test_the_two_batch_estimates_are_unbiased(draws):
    small, big, (g2, trace) = draws
    assert g2_estimate(small, big, 8, 64).mean() == pytest.approx(g2, rel=0.04)
    assert trace_estimate(small, big, 8, 64).mean() == pytest.approx(trace, rel=0.04)
    # the naive estimate, |G_big|^2 alone, is biased up by tr(Sigma) / B_big: the reason for
    # two batch sizes
    assert big.mean() > 1.2 * g2


def test_the_estimates_are_unbiased_on_a_finite_training_set():
    """Batches drawn without replacement from N examples: E|G_B|^2 = |G|^2 + tr(S)(1/B - 1/N),
    and a full batch (B = N) has no noise at all."""
    rng = np.random.default_rng(2)
    n, dim, reps = 256, 5, 20000
    per_example = rng.normal(size=(n, dim)) + 0.3  # a fixed finite training set's gradients
    g2 = float((per_example.mean(0) ** 2).sum())
    trace = float(per_example.var(0, ddof=0).sum()) * n / (n - 1)

    def draw(b: int) -> np.ndarray:
        idx = np.argsort(rng.random((reps, n)), axis=1)[:, :b]
        return (per_example[idx].mean(1) ** 2).sum(1)

    small, big = draw(16), draw(128)
    assert g2_estimate(small, big, 16, 128, n).mean() == pytest.approx(g2, rel=0.03)
    assert trace_estimate(small, big, 16, 128, n).mean() == pytest.approx(trace, rel=0.03)
    # uncorrected, |G|^2 comes out low by tr(Sigma) / N: B_simple high when it nears N
    naive = g2_estimate(small, big, 16, 128).mean()
    assert naive == pytest.approx(g2 - trace / n, rel=0.03)
    full = draw(n)  # the full batch: exactly |G|^2
    assert g2_estimate(small, full, 16, n, n).mean() == pytest.approx(g2, rel=1e-9)


def test_the_smoothed_ratio_recovers_b_simple(draws):
    small, big, (g2, trace) = draws
    ema = NoiseScaleEMA(decay=0.999)
    for s, b in zip(small, big, strict=True):
        ema.update(s, b, 8, 64)
    assert ema.value == pytest.approx(trace / g2, rel=0.06)


def test_the_ema_is_nan_until_measured_and_survives_a_state_round_trip():
    ema = NoiseScaleEMA(decay=0.5)
    assert math.isnan(ema.value)
    ema.update(3.0, 1.0, 4, 16)  # g2 = (16 - 12) / 12 = 1/3, trace = 2 / (3/16) = 32/3
    assert ema.value == pytest.approx(32.0)
    ema.update(float("nan"), 1.0, 4, 16)  # a diverging step is skipped
    assert ema.n == 1
    again = NoiseScaleEMA.from_state(ema.state())
    again.update(3.0, 1.0, 4, 16)
    ema.update(3.0, 1.0, 4, 16)
    assert again.value == ema.value == pytest.approx(32.0)
    assert ema_decay(100) == pytest.approx(0.99) and ema_decay(1) == pytest.approx(0.75)
    with pytest.raises(ValueError, match="b_small < b_big"):
        ema.update(1.0, 1.0, 16, 16)


# ---------------------------------------------------------------- in the training loop
@pytest.fixture(scope="module")
def quad():
    return load_dataset("quadratic", "/nonexistent-not-needed")


def quad_cfg(**kw) -> TrainConfig:
    return TrainConfig(
        **{
            "batch_size": 16,
            "lr": 0.0,
            "epochs": 2,
            "dataset": "quadratic",
            "model": "linear",
            "measure_noise_scale": True,
            **kw,
        }
    )


def dataset_b_simple(quad) -> float:
    """B_simple of the training set at w = 0 (per-example gradients g = -x y)."""
    x, y = quad.x_train.flatten(1).double(), quad.y_train.double()
    g = -x * y[:, None]
    mean = g.mean(0)
    return float(((g - mean) ** 2).sum(1).mean() / (mean @ mean))


def test_the_loop_measures_the_known_noise_scale(quad):
    # lr = 0 keeps the weights at 0, where the training set's B_simple is known (about 35)
    values = [e.metrics.noise_scale for e in train(quad_cfg(epochs=20), quad)]
    assert all(math.isfinite(v) for v in values)
    assert np.mean(values) == pytest.approx(dataset_b_simple(quad), rel=0.15)


def test_the_noise_scale_grows_as_training_converges(quad):
    # McCandlish et al.: |G|^2 shrinks towards the optimum while tr(Sigma) stays (label noise)
    values = [e.metrics.noise_scale for e in train(quad_cfg(lr=0.05, epochs=4), quad)]
    assert values[-1] > 5 * values[0]


def test_noise_scale_is_nan_when_not_measured(quad):
    assert all(
        math.isnan(e.metrics.noise_scale)
        for e in train(quad_cfg(measure_noise_scale=False, lr=0.01), quad)
    )


@pytest.mark.parametrize("model", ["cnn1", "resnet8"])
def test_measuring_does_not_change_the_training_trajectory(model):
    # cnn1 has dropout (RNG stream), resnet8 batch norm (running statistics in the buffers)
    data = load_dataset("synthetic", "/nonexistent-not-needed")
    cfg = TrainConfig(
        batch_size=32,
        lr=0.05,
        epochs=2 if model == "cnn1" else 1,
        dataset="synthetic",
        model=model,
    )
    off = [e.metrics for e in train(cfg, data)]
    on = [e.metrics for e in train(replace(cfg, measure_noise_scale=True), data)]
    strip = lambda ms: [(m.train_loss, m.val_loss, m.val_acc) for m in ms]  # noqa: E731
    assert strip(on) == strip(off)
    assert all(m.noise_scale > 0 for m in on)


def test_a_resumed_trial_continues_the_same_measurement(quad):
    cfg = quad_cfg(lr=0.02, epochs=3)
    full = [e.metrics.noise_scale for e in train(cfg, quad)]
    first = next(iter(train(cfg, quad)))
    rest = [e.metrics.noise_scale for e in train(cfg, quad, resume=first.state)]
    assert rest == pytest.approx(full[1:], rel=1e-6)
