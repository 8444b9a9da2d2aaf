"""analysis.best: the best lr per batch size, below grid resolution, with CI, edge and divergence.

Known answers: results folders generated from planted laws by analysis.synthetic."""

import math

import numpy as np
import pytest

from analysis.best import estimate_best_lr
from analysis.load import load_results
from analysis.synthetic import Law, SweepSpec, scenario, write_results, write_trial

N_BOOT = 200  # enough for a 95% CI in tests; the CLI default is 1000


def _trials(tmp_path, law, spec, seed=0):
    write_results(tmp_path, law, spec, seed=seed)
    return load_results(tmp_path).trials


@pytest.fixture(scope="module")
def linear_best(tmp_path_factory):
    law, spec = scenario("linear")
    trials = _trials(tmp_path_factory.mktemp("linear"), law, spec)
    return law, spec, trials, estimate_best_lr(trials, "val_loss", n_boot=N_BOOT)


def test_noise_free_optimum_is_found_exactly_between_grid_points(tmp_path):
    # lrs every 0.25 decades; the planted optimum sits 0.1 decades off the nearest one
    law = Law("linear", lr0=0.01 * 10**0.1)
    spec = SweepSpec(
        batch_sizes=(8, 64), noise=0.0, skew=0.0, jitter=0.0, seeds=1, grid=False, center_alpha=1.0
    )
    best = estimate_best_lr(_trials(tmp_path, law, spec), n_boot=0)
    for _, r in best.iterrows():
        assert r["fit"] == "parabola"
        assert math.log10(r["lr"]) == pytest.approx(
            math.log10(law.lr_star(r["batch_size"])), abs=1e-6
        )
        assert abs(math.log10(r["lr_best_tried"] / r["lr"])) > 0.09  # not a tried lr


def test_noisy_optimum_is_recovered_below_grid_resolution_with_a_covering_ci(linear_best):
    law, spec, _, best = linear_best
    truth = np.log10([law.lr_star(b) for b in best["batch_size"]])
    err = np.abs(np.log10(best["lr"].to_numpy(dtype=float)) - truth)
    step = np.diff(spec.lr_offsets).min()
    assert np.median(err) < step / 2
    covered = (best["lr_ci_lo"] <= 10**truth) & (10**truth <= best["lr_ci_hi"])
    assert covered.sum() >= len(best) - 1
    assert not best["at_edge"].any()
    assert (best["bootstrap"] == "trials").all()


def test_diverged_trials_are_excluded_counted_and_give_the_divergence_edge(linear_best):
    law, spec, trials, best = linear_best
    for _, r in best.iterrows():
        mine = trials[trials["batch_size"] == r["batch_size"]]
        planted = np.log10(mine["lr"] / law.lr_star(r["batch_size"])) > spec.diverge_above
        assert r["n_diverged"] == planted.sum() == (mine["status"] == "diverged").sum()
        assert r["n_trials"] == len(mine)
        if planted.any():
            assert r["lr_div"] == pytest.approx(mine.loc[planted, "lr"].min())
            assert r["lr_feasible_max"] < r["lr_div"]
            assert r["lr"] < r["lr_div"]
        else:
            assert np.isnan(r["lr_div"])
    assert best["n_diverged"].sum() > 0


def test_optimum_beyond_the_lrs_tried_is_flagged_at_edge(tmp_path):
    law, spec = scenario("edge")
    best = estimate_best_lr(_trials(tmp_path, law, spec), n_boot=N_BOOT)
    assert best.set_index("batch_size")["at_edge"].to_dict() == {
        b: b == 256 for b in spec.batch_sizes
    }
    row = best.set_index("batch_size").loc[256]
    assert row["lr"] < law.lr_star(256)  # a bound below the truth, not the optimum


def test_one_lr_per_batch_size_locates_no_optimum(tmp_path):
    law, spec = scenario("grid_only")
    best = estimate_best_lr(_trials(tmp_path, law, spec), n_boot=N_BOOT)
    assert best["at_edge"].all()
    assert (best["n_lrs"] == 1).all()


def test_accuracy_is_maximised(linear_best):
    law, _, trials, _ = linear_best
    best = estimate_best_lr(trials, "val_acc", n_boot=N_BOOT)
    truth = np.log10([law.lr_star(b) for b in best["batch_size"]])
    assert np.median(np.abs(np.log10(best["lr"].to_numpy(dtype=float)) - truth)) < 0.1
    assert (best["metric_best"] > 0.9).all()


def test_same_seed_gives_the_same_ci(linear_best):
    _, _, trials, best = linear_best
    again = estimate_best_lr(trials, "val_loss", n_boot=N_BOOT)
    assert again["lr_ci_lo"].tolist() == best["lr_ci_lo"].tolist()


def test_without_a_usable_parabola_the_ci_spans_the_bracketing_lrs(tmp_path):
    # three lrs more than a decade apart: the optimum is bracketed, not located, and a
    # bootstrap of the best tried lr alone would claim a CI of zero width
    for i, (lr, loss) in enumerate(((0.0009, 0.9), (0.01, 0.3), (0.12, 0.8), (0.01, 0.32))):
        cfg = {"batch_size": 8, "lr": lr, "epochs": 1, "seed": i}
        write_trial(tmp_path / "exp", i, cfg, [{"epoch": 1, "val_loss": loss}])
    best = estimate_best_lr(load_results(tmp_path).trials, n_boot=N_BOOT).iloc[0]
    assert best["fit"] == "argmin" and not best["at_edge"]
    assert best["lr"] == pytest.approx(0.01)
    assert best["lr_ci_lo"] <= 0.0009 * (1 + 1e-9) and best["lr_ci_hi"] >= 0.12 * (1 - 1e-9)
