"""Steps to target (Shallue et al.): the regime fit, and the report on a planted curve."""

import json
import math

import numpy as np
import pytest

from analysis.fit_rule import main
from analysis.load import load_results
from analysis.steps import REGIMES, fit_regimes, steps_curve, unreached_text
from analysis.synthetic import scenario, write_results

N_BOOT = "100"
PERFECT, DIMINISHING, PLATEAU = REGIMES


def test_the_piecewise_fit_finds_planted_breakpoints_exactly():
    law = scenario("steps")[1].steps  # perfect to 32, slope -0.5 to 256, then flat
    b = np.array([8, 16, 32, 64, 128, 256, 512, 1024], dtype=float)
    fit = fit_regimes(b, np.array([law.steps_star(x) for x in b]))
    assert fit.b1 == pytest.approx(32, rel=0.05) and fit.b2 == pytest.approx(256, rel=0.05)
    assert fit.slope_mid == pytest.approx(-0.5, abs=0.02) and fit.rmse < 0.01
    assert [fit.regime(x) for x in (8, 16, 64, 128, 512, 1024)] == [
        PERFECT,
        PERFECT,
        DIMINISHING,
        DIMINISHING,
        PLATEAU,
        PLATEAU,
    ]


def test_pure_perfect_scaling_and_a_pure_plateau_are_one_regime_each():
    b = np.array([8, 16, 32, 64, 128], dtype=float)
    perfect = fit_regimes(b, 4000 / b)
    assert {perfect.regime(x) for x in b} == {PERFECT} and not perfect.has_plateau
    flat = fit_regimes(b, np.full(5, 300.0))
    assert {flat.regime(x) for x in b} == {PLATEAU} and not flat.has_perfect
    assert fit_regimes(b[:2], 4000 / b[:2]) is None  # two points: nothing to fit


@pytest.fixture(scope="module")
def steps_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("steps")
    law, spec = scenario("steps")
    write_results(root, law, spec)
    return root, law, spec


def test_the_curve_recovers_the_planted_steps_and_regimes(steps_folder):
    root, _, spec = steps_folder
    curve = steps_curve(load_results(root).trials)
    t = curve.table.set_index("batch_size")
    for b in spec.batch_sizes:  # fewest steps over the lrs ~ the planted S*(B)
        assert t.loc[b, "steps"] == pytest.approx(spec.steps.steps_star(b), rel=0.1)
    assert 16 <= curve.fit.b1 <= 64 and 128 <= curve.fit.b2 <= 512
    assert -0.7 <= curve.fit.slope_mid <= -0.3
    assert list(t.loc[[8, 16, 64, 128, 512], "regime"]) == [
        PERFECT,
        PERFECT,
        DIMINISHING,
        DIMINISHING,
        PLATEAU,
    ]
    assert curve.target == "val_acc >= 0.97"
    assert (t["n_reached"] < t["n_trials"]).all()  # lrs far from the optimum never reach it


def test_objective_steps_to_target_ranks_trials_by_fewest_steps(steps_folder, tmp_path):
    root, law, _ = steps_folder
    out = tmp_path / "report"
    assert (
        main(
            [
                "--results",
                str(root),
                "--out",
                str(out),
                "--objective",
                "steps_to_target",
                "--n-boot",
                N_BOOT,
            ]
        )
        == 0
    )
    doc = json.loads((out / "fit.json").read_text())
    assert doc["metric"] == doc["objective"] == "steps_to_target"
    assert doc["verdict"] == "linear"  # the planted lr*(B) is linear; fewest steps find it
    for entry in doc["best_lr"]:
        assert entry["lr"] == pytest.approx(law.lr_star(entry["batch_size"]), rel=0.35)
    # infeasible for this objective: never reached; diverged trials are counted apart
    assert sum(e["n_not_reached"] for e in doc["best_lr"]) > 0
    trials = load_results(root).trials
    assert sum(e["n_diverged"] for e in doc["best_lr"]) == (trials["status"] == "diverged").sum()
    regimes = doc["steps_to_target"]["regimes"]
    assert 16 <= regimes["b_perfect_scaling_end"] <= 64
    assert 128 <= regimes["b_plateau_start"] <= 512
    md = (out / "report.md").read_text()
    assert "## Steps to target (val_acc >= 0.97) against batch size" in md
    assert "perfect scaling (slope -1) up to B1" in md and "exhaustive search" in md
    assert (out / "figures" / "steps_to_target.png").read_bytes()[:4] == b"\x89PNG"


def test_the_default_objective_still_draws_the_steps_curve(steps_folder, tmp_path):
    root, _, _ = steps_folder
    assert main(["--results", str(root), "--out", str(tmp_path), "--n-boot", N_BOOT]) == 0
    doc = json.loads((tmp_path / "fit.json").read_text())
    assert doc["metric"] == "val_loss" and doc["steps_to_target"]["per_batch"]
    assert (tmp_path / "figures" / "steps_to_target.png").exists()


def test_steps_objective_without_a_target_is_one_clear_error(tmp_path, capsys):
    law, spec = scenario("linear")
    write_results(tmp_path, law, spec)
    assert main(["--results", str(tmp_path), "--objective", "steps_to_target"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "target: {metric: val_acc, value: 0.97}" in err


def test_a_budget_too_short_for_large_batches_is_explained(tmp_path):
    law, spec = scenario("steps")
    short = type(spec)(**{**spec.__dict__, "epochs": 10, "batch_sizes": (8, 32, 128, 512)})
    write_results(tmp_path, law, short)
    curve = steps_curve(load_results(tmp_path).trials)
    assert math.isnan(curve.table.set_index("batch_size").loc[512, "steps"])
    assert curve.table.set_index("batch_size").loc[512, "regime"] == "not reached"
    assert "B = 512" in unreached_text(curve) and "raise `epochs`" in unreached_text(curve)
