"""Momentum's effective lr, Adam's 'no lr change' (alpha = 0), the surge, and the measured
noise scale beside the fitted B_noise: on folders with planted laws."""

import json

import pytest

from analysis.decision import decide
from analysis.fit_rule import main
from analysis.inference import infer
from analysis.load import load_results
from analysis.synthetic import Law, SweepSpec, scenario, write_results

N_BOOT = "40"


def report(root, out) -> tuple[dict, str]:
    assert main(["--results", str(root), "--out", str(out), "--n-boot", N_BOOT]) == 0
    return json.loads((out / "fit.json").read_text()), (out / "report.md").read_text()


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    cache = {}

    def run(name: str, spec_changes: dict | None = None, law: Law | None = None):
        key = (name, tuple(sorted((spec_changes or {}).items())), repr(law))
        if key not in cache:
            law0, spec = scenario(name)
            spec = SweepSpec(**{**spec.__dict__, **(spec_changes or {})})
            root = tmp_path_factory.mktemp(name)
            write_results(root, law or law0, spec)
            cache[key] = report(root, root / "report")
        return cache[key]

    return run


def test_adam_with_a_constant_best_lr_supports_no_lr_change(planted):
    doc, md = planted("adam_constant")
    assert doc["optimizer"]["name"] == "adam"
    lo, hi = doc["power_law"]["alpha_ci"]
    assert lo <= 0 <= hi
    aic = {m: v["aic"] for m, v in doc["models"].items()}
    assert aic["constant"] - min(aic.values()) < 2  # as good as the best, with fewer params
    assert doc["no_lr_change"]["result"] == "supported"
    assert doc["verdict"] == "neither"  # neither linear nor sqrt: the contract's values
    assert "does not change with batch size" in doc["verdict_text"]
    assert not doc["surge"]["detected"]
    assert "No lr change needed (alpha = 0, the article's claim): Supported" in md


def test_adam_following_sqrt_rejects_no_lr_change(planted):
    doc, _ = planted("adam_constant", law=Law("sqrt", lr0=0.002))
    assert doc["verdict"] == "sqrt" and doc["no_lr_change"]["result"] == "rejected"
    assert "Square-root rule supported" in doc["verdict_text"]


def test_a_planted_surge_is_detected_near_its_peak(planted):
    doc, md = planted("adam_surge")
    surge = doc["surge"]
    assert surge["detected"] and 32 <= surge["b_peak"] <= 128  # planted peak: B = 64
    assert surge["d_aicc"] >= 10
    assert doc["verdict"] == "neither" and "rises and then falls" in doc["verdict_text"]
    assert "Surge: the best lr peaks near B =" in md


@pytest.mark.parametrize("name", ["saturating", "linear", "sqrt", "adam_constant"])
@pytest.mark.parametrize("seed", [1, 2])
def test_monotone_laws_show_no_surge(name, seed, tmp_path):
    law, spec = scenario(name)
    write_results(tmp_path, law, spec, seed=seed)
    inf = infer(load_results(tmp_path).trials, replicates=0, warmup=False)
    assert decide(inf).reason != "curved"


def test_momentum_reports_the_effective_lr(planted):
    doc, md = planted("momentum")
    assert doc["optimizer"] == {
        "name": "momentum",
        "momentum": 0.9,
        "effective_lr_factor": pytest.approx(10.0),
    }
    for e in doc["best_lr"]:
        assert e["effective_lr"] == pytest.approx(10 * e["lr"])
    assert doc["verdict"] == "linear" and "constant" not in doc["models"]
    assert doc["no_lr_change"] is None  # tested for adaptive optimizers only
    assert "Effective lr = lr / (1 - m) = 10 x lr" in md
    assert "| effective lr lr/(1-m) |" in md


def test_sgd_reports_keep_the_four_contract_models(planted):
    doc, _ = planted("linear")
    assert {"linear", "sqrt", "power", "saturating"} <= set(doc["models"])
    assert "constant" not in doc["models"]  # the 'no lr change' rule is for Adam
    assert doc["measured_noise_scale"] is None and doc["steps_to_target"] is None


def test_the_measured_noise_scale_sits_beside_the_fitted_b_noise(planted):
    # saturating law with B_noise = 64; every trial reports B_simple ~ 64 near its best lr
    doc, md = planted("saturating", {"noise_scale": 64.0})
    ns = doc["measured_noise_scale"]
    assert ns["median"] == pytest.approx(64, rel=0.15)
    assert [e["batch_size"] for e in ns["per_batch"]] == [8, 16, 32, 64, 128, 256, 512, 1024]
    assert all(e["noise_scale"] == pytest.approx(64, rel=0.3) for e in ns["per_batch"])
    assert ns["b_noise_fit"] == doc["models"]["saturating"]["b_noise"]
    assert 1 / 3 <= ns["ratio_to_fit"] <= 3
    assert "## Gradient noise scale: measured against fitted" in md
    assert "they agree within a factor 3" in md
