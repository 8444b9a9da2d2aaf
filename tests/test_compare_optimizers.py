"""`python -m analysis.compare_optimizers`: one report with an SGD and an Adam sweep."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from analysis.compare_optimizers import main
from analysis.synthetic import scenario, write_results

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    """SGD (linear law, a target, the noise scale) against Adam (constant best lr)."""
    root = tmp_path_factory.mktemp("cmp")
    sgd = write_results(root / "sgd", *scenario("steps"))
    adam = write_results(root / "adam", *scenario("adam_constant"))
    out = root / "compare"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "analysis.compare_optimizers",
            "--results",
            str(sgd),
            str(adam),
            "--out",
            str(out),
            "--n-boot",
            "100",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return out, proc


def test_one_report_holds_both_optimizers(compared):
    out, proc = compared
    assert proc.returncode == 0, proc.stderr
    assert "sweep: sgd" in proc.stdout and "sweep: adam" in proc.stdout
    doc = json.loads((out / "compare.json").read_text())
    sgd, adam = doc["sweeps"]
    assert (sgd["label"], adam["label"]) == ("sgd", "adam")  # from params.json
    assert sgd["verdict"] == "linear" and sgd["alpha_ci"][0] <= 1 <= sgd["alpha_ci"][1]
    assert adam["no_lr_change"] == "supported" and adam["alpha_ci"][0] <= 0 <= adam["alpha_ci"][1]
    assert sgd["steps_to_target"] and adam["steps_to_target"] is None
    assert sgd["measured_noise_scale"] == pytest.approx(300, rel=0.15)
    md = (out / "compare.md").read_text()
    assert "| sgd | plain SGD |" in md and "| adam | Adam |" in md
    assert "No lr change needed (alpha = 0): Supported" in md
    assert "Steps-to-target regimes" in md and "WARNING" not in md


def test_figures_and_each_sweeps_own_report_are_written(compared):
    out, _ = compared
    for name in ("best_lr_compare", "steps_compare"):
        assert (out / "figures" / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
    html = (out / "compare.html").read_text()
    assert html.count("src='data:image/png;base64,") == 2 and "src='figures" not in html
    for label in ("sgd", "adam"):
        assert (out / label / "report.html").exists() and (out / label / "fit.json").exists()


def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    one = write_results(tmp_path, *scenario("linear"))
    assert main(["--results", str(one), "--out", str(tmp_path / "o")]) == 2
    assert "at least two results folders" in capsys.readouterr().err
    assert (
        main(["--results", str(one), str(tmp_path / "missing"), "--out", str(tmp_path / "o")]) == 2
    )
    assert "does not exist" in capsys.readouterr().err
    assert (
        main(["--results", str(one), str(one), "--labels", "a", "--out", str(tmp_path / "o")]) == 2
    )
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "one per folder" in err
