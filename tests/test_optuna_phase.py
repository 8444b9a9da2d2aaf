"""The Optuna phase on a problem whose best lr per batch size is known in closed form.

Real local Ray, real Optuna studies in a real journal file; the known answer comes from
`trainables.quadratic.best_lr` (exact expected-loss recursion), not from the sweep.
"""

import json
from collections import defaultdict
from pathlib import Path

import optuna
import pytest
from conftest import CONFIGS, run_sweep, sets
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from sweep.config import load_config
from sweep.runner import build_plan
from trainables.quadratic import best_lr

QUADRATIC = CONFIGS / "quadratic.yaml"

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def quadratic_sweep(storage: Path, name: str, *overrides: str) -> str:
    out = run_sweep(
        storage, "--name", name, "--no-report", *sets(*overrides), config=QUADRATIC, timeout=400
    )
    return out.stdout


def trials(exp: Path) -> list[tuple[dict, list[dict]]]:
    found = []
    for params in sorted(exp.glob("*/params.json")):
        rows = [json.loads(x) for x in (params.parent / "result.json").read_text().splitlines()]
        found.append((json.loads(params.read_text()), rows))
    return found


def studies(exp: Path) -> dict[str, optuna.Study]:
    storage = JournalStorage(JournalFileBackend(str(exp / "optuna-journal.log")))
    return {
        s.study_name: optuna.load_study(study_name=s.study_name, storage=storage)
        for s in optuna.get_all_study_summaries(storage)
    }


@pytest.fixture(scope="module")
def storage(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("shared-results")


@pytest.fixture(scope="module")
def searched(storage) -> tuple[Path, str]:
    out = quadratic_sweep(storage, "search", "optuna.trials_per_batch_size=14")
    return storage / "search", out


def test_optuna_lands_within_1_5x_of_the_known_best_lr_from_a_grid_10x_off(searched):
    exp, _ = searched
    best: dict[int, list[tuple[float, float]]] = defaultdict(list)
    for cfg, rows in trials(exp):
        if cfg["phase"] == "optuna" and not rows[-1]["diverged"]:
            best[cfg["batch_size"]].append((rows[-1]["val_loss"], cfg["lr"]))
    assert set(best) == {4, 16, 64}
    for b, found in best.items():
        lr = min(found)[1]
        truth = best_lr(b)
        assert truth / 1.5 < lr < truth * 1.5, f"B={b}: found {lr:.4g}, known {truth:.4g}"
        grid_lr = 0.0019 * b / 4
        assert truth / grid_lr > 8  # the grid itself was ~10x off


def test_one_study_per_batch_size_seeded_with_the_grid_which_is_not_rerun(searched):
    exp, _ = searched
    all_trials = trials(exp)
    grid = {(c["batch_size"], c["lr"]) for c, _ in all_trials if c["phase"] == "grid"}
    optuna_runs = [(c["batch_size"], c["lr"]) for c, _ in all_trials if c["phase"] == "optuna"]
    assert len(grid) == 3 and 3 * 14 <= len(optuna_runs) <= 3 * 16  # + bracketing trials
    assert not grid & set(optuna_runs)
    found = studies(exp)
    assert len(found) == 3 and all(name.startswith("search-") for name in found)
    for name, study in found.items():
        phases = [t.user_attrs.get("phase") for t in study.trials]
        assert phases.count("grid") == 1 and 14 <= phases.count("optuna") <= 16, name
        assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)


def test_confirmation_reruns_the_best_lr_with_new_seeds(searched):
    exp, stdout = searched
    confirm = [c for c, _ in trials(exp) if c["phase"] == "confirm"]
    assert sorted(c["batch_size"] for c in confirm) == [4, 16, 64]
    assert all(c["seed"] != 0 for c in confirm)
    ranked = defaultdict(list)
    for c, rows in trials(exp):
        if c["phase"] in ("grid", "optuna") and not rows[-1]["diverged"]:
            ranked[c["batch_size"]].append((rows[-1]["val_loss"], c["lr"]))
    for c in confirm:
        assert c["lr"] == min(ranked[c["batch_size"]])[1]
    n = 3 + 3 + 3 * 14 + stdout.count("to bracket it")
    assert f"[sweep {n}/{n}]" in stdout


def test_a_range_that_misses_the_optimum_is_widened_until_it_holds_it(storage, searched):
    out = quadratic_sweep(
        storage,
        "narrow",
        "batch_sizes=[16]",
        "optuna.lr_range_decades=0.5",
        "optuna.trials_per_batch_size=8",
        "confirm.top_k=0",
    )
    assert "widened to" in out and "upper edge" in out
    found = studies(storage / "narrow")
    widest = max(found.values(), key=lambda s: len(s.trials))
    assert "-w" in widest.study_name
    dist = widest.trials[-1].distributions["lr"]
    truth = best_lr(16)
    assert dist.low < truth < dist.high
    assert dist.low < 0.0019 * 4 * 10**-0.5 * 1.01  # grew upwards only
    # and two sweeps sharing the results folder never share a study
    assert not set(found) & set(studies(storage / "search"))


def test_the_same_seed_gives_the_same_plan_and_another_seed_does_not(tmp_path):
    cfg = load_config(QUADRATIC, ["seed=7"])
    a, b = build_plan(cfg, tmp_path), build_plan(cfg, tmp_path)
    c = build_plan(load_config(QUADRATIC, ["seed=8"]), tmp_path)
    assert a.grid == b.grid
    assert [s.sampler_seed for s in a.studies.values()] == [
        s.sampler_seed for s in b.studies.values()
    ]
    assert [s.sampler_seed for s in a.studies.values()] != [
        s.sampler_seed for s in c.studies.values()
    ]
    assert {t["seed"] for t in a.grid} == {7} and a.confirm_seeds == [8]
