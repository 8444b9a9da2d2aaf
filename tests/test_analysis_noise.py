"""analysis.noise: the measured gradient noise scale, compared at equal training progress."""

import pandas as pd
import pytest

from analysis.noise import measured_noise_scale


def _tables(curves: dict[int, list[tuple[float, float]]], seeds: int = 1):
    trials, epochs = [], []
    for b, rows in curves.items():
        for s in range(seeds):
            name = f"t{b}_{s}"
            trials.append(
                {
                    "trial": name,
                    "batch_size": b,
                    "lr": 0.01 * b,
                    "status": "done",
                    "noise_scale": rows[-1][1] * (1 + 0.05 * s),
                }
            )
            for e, (loss, ns) in enumerate(rows, start=1):
                epochs.append(
                    {
                        "trial": name,
                        "epoch": e,
                        "train_loss": loss,
                        "noise_scale": ns * (1 + 0.05 * s),
                    }
                )
    best = pd.DataFrame({"batch_size": list(curves), "lr": [0.01 * b for b in curves]})
    return pd.DataFrame(trials), best, pd.DataFrame(epochs)


def test_batch_sizes_are_compared_where_their_training_loss_is_the_same():
    # B = 8 trains faster per epoch: at its last epoch it is further along, and its noise
    # scale (which grows as training converges) is higher; where both reached loss 0.5 they
    # agree
    trials, best, epochs = _tables(
        {8: [(1.0, 100), (0.5, 200), (0.3, 300)], 64: [(1.2, 100), (0.8, 150), (0.5, 200)]}
    )
    ns = measured_noise_scale(trials, best, epochs)
    assert ns.level == pytest.approx(0.5)
    assert ns.table["noise_scale"].tolist() == pytest.approx([200, 200])
    final_only = measured_noise_scale(trials, best)  # without the epochs: final values
    assert final_only.table["noise_scale"].tolist() == pytest.approx([300, 200])


def test_seeds_at_the_best_lr_give_an_interval():
    trials, best, epochs = _tables(
        {8: [(1.0, 100), (0.5, 200)], 16: [(1.0, 90), (0.5, 210)]}, seeds=3
    )
    ns = measured_noise_scale(trials, best, epochs)
    row = ns.table.iloc[0]
    assert row["n_trials"] == 3 and row["ci_lo"] < row["noise_scale"] < row["ci_hi"]
    assert ns.ci[0] < ns.median < ns.ci[1]
