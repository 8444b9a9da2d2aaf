"""design: adaptive inside the sweep, without Ray: the searcher driven by hand (two slots), with
real Optuna studies in a real journal, on a planted linear law with seed noise. It must stop
decided with the right verdict, give every trial its own seed, record every trial in the
studies, pin each optimum with its pin trials, measure the noise scale once per batch size, and
resume after a kill in any phase without running anything twice."""

import math
from collections import Counter

import numpy as np
import optuna
import pytest
from conftest import SMOKE
from driver import Driver

from sweep import design
from sweep.config import ConfigError, load_config
from sweep.resume import CONTINUE, DONE, RERUN, History, TrialRecord, config_key
from sweep.runner import build_plan, dry_run
from sweep.search import PhasedSearcher

ADAPTIVE = [
    "batch_sizes=[8,64]",
    "grid.lr_multipliers=[1]",
    "grid.warmup_epochs=[0]",
    "optuna.warmup_epochs=[0]",
    "optuna.lr_range_decades=1",
    "design=adaptive",
    "adaptive.batch_sizes=[8,32,128]",
    "adaptive.replicates=40",
    "budget.trials=80",
    "measure_noise_scale=true",
    "adaptive.pin_trials=2",
]
NOISE = 0.02  # seed-to-seed sd of the final loss, against a curvature of 1 per decade^2


def loss(config: dict) -> float:
    """Linear law: best lr 0.05 x B/8; diverged above 4 x the best lr; seed noise."""
    lr, b = config["lr"], config["batch_size"]
    x = math.log10(lr / (0.05 * b / 8))
    if x > math.log10(4):
        return math.nan
    noise = np.random.default_rng(config["seed"]).normal(0.0, NOISE)
    return 0.5 + x**2 + noise


def row(trial_id: str, config: dict) -> dict:
    value = loss(config)
    return {"val_loss": value, "diverged": math.isnan(value), "trial_id": trial_id}


def studies_in(journal) -> dict[str, list]:
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(journal))
    )
    return {
        name: optuna.load_study(study_name=name, storage=storage).trials
        for name in optuna.get_all_study_names(storage)
    }


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("adaptive")
    cfg = load_config(SMOKE, ADAPTIVE)
    driver = Driver(PhasedSearcher(build_plan(cfg, folder, run_name="a-1"), max_concurrent=2), row)
    while driver.step():
        pass
    return folder, driver


def test_the_loop_stops_decided_linear_and_measures_the_noise_scale_once(full_run):
    folder, driver = full_run
    s = driver.searcher
    notes = " ".join(s.state.notes)
    assert "[design] decided after" in notes and "linear" in notes, notes
    assert s.state.finished
    runs = [driver.configs[t] for t in driver.finished]
    phases = Counter(r["phase"] for r in runs)
    assert phases["grid"] == 2 and phases["optuna"] < 80  # stopped before the budget
    pins = [r for r in runs if r["phase"] == "pin"]
    assert Counter(r["batch_size"] for r in pins) == {8: 2, 32: 2, 128: 2}
    for r in pins:  # near the optimum, on both sides of it
        assert abs(math.log10(r["lr"] / (0.05 * r["batch_size"] / 8))) < 0.3
    assert len({r["seed"] for r in pins}) == 6
    assert s.totals()["pin"] == s.finished_counts()["pin"] == 6  # the progress line's counts
    order = [r["phase"] for r in runs]
    assert order.index("confirm") > max(i for i, p in enumerate(order) if p == "pin")
    assert "pinning each batch size's best lr: 2 trials near each optimum" in notes
    measured = [r for r in runs if r["measure_noise_scale"]]
    assert sorted(r["batch_size"] for r in measured) == [8, 32, 128]
    assert all(r["phase"] == "confirm" for r in measured)
    for r in measured:  # at the modelled best lr, which the planted law knows
        assert abs(math.log10(r["lr"] / (0.05 * r["batch_size"] / 8))) < 0.15
    # the answer forming was shown, ending decided
    assert any(a.startswith("[design] alpha = ") for a in driver.answers)
    assert "decided: linear" in driver.answers[-1]


def test_every_adaptive_trial_has_its_own_seed_and_is_in_its_study(full_run):
    folder, driver = full_run
    runs = {t: driver.configs[t] for t in driver.finished}
    adaptive = {t: c for t, c in runs.items() if c["phase"] == "optuna"}
    seeds = [c["seed"] for c in adaptive.values()]
    assert len(set(seeds)) == len(seeds)
    studies = studies_in(folder / "optuna-journal.log")
    for b in (8, 32, 128):
        trials = studies[f"a-1-B{b}"]
        assert {t.state.name for t in trials} == {"COMPLETE"}
        asked = {t.user_attrs["trial_id"]: t for t in trials if t.user_attrs["source"] == "asked"}
        mine = {t for t, c in adaptive.items() if c["batch_size"] == b}
        assert set(asked) == mine
        for trial_id, t in asked.items():
            assert t.params["lr"] == runs[trial_id]["lr"]
            assert t.user_attrs["seed"] == runs[trial_id]["seed"]
            assert t.user_attrs["design"] in ("start", "bracket", "cover", "alpha")
    # the grid's B=8 trial is told to B=8's study; B=64 is the grid's only
    added = [t for t in studies["a-1-B8"] if t.user_attrs["source"] == "added"]
    assert [t.user_attrs["phase"] for t in added] == ["grid"]


def test_a_decision_the_last_trials_undo_sends_the_loop_on(tmp_path):
    """The noise-scale trials (and those running at the stop) are data the report fits: when
    they leave the verdict undecided, the loop goes on until it is decided on every trial."""

    def worse_when_measured(trial_id: str, config: dict) -> dict:
        value = loss(config) + (0.3 if config["measure_noise_scale"] else 0.0)
        return {"val_loss": value, "diverged": math.isnan(value), "trial_id": trial_id}

    cfg = load_config(SMOKE, [*ADAPTIVE, "budget.trials=120"])  # (its path varies: room to decide)
    plan = build_plan(cfg, tmp_path, run_name="v-1")
    driver = Driver(PhasedSearcher(plan, max_concurrent=2), worse_when_measured)
    while driver.step():
        pass
    notes = driver.searcher.state.notes
    undone = [i for i, n in enumerate(notes) if "no longer decided" in n]
    assert undone and "the loop goes on" in notes[undone[0]], notes
    first_stop = next(n for n in notes if n.startswith("[design] decided after"))
    assert "the verdict holds on all" in notes[-1] and notes[-1].endswith("linear"), notes
    runs = [driver.configs[t] for t in driver.finished]
    n_adaptive = sum(r["phase"] == "optuna" for r in runs)
    assert n_adaptive > int(first_stop.split("after ")[1].split()[0])  # searched on after it
    measured = [r["batch_size"] for r in runs if r["measure_noise_scale"]]
    assert sorted(measured) == [8, 32, 128]  # each measured once
    assert driver.searcher.state.finished
    assert "decided: linear" in driver.answers[-1]


@pytest.mark.parametrize("kill_at", ["searching", "pinning", "measuring"])
def test_a_kill_in_the_loop_resumes_without_running_anything_twice(tmp_path, full_run, kill_at):
    _, whole = full_run
    cfg = load_config(SMOKE, ADAPTIVE)
    plan = build_plan(cfg, tmp_path, run_name="a-1")
    first = Driver(PhasedSearcher(plan, max_concurrent=2), row)
    phases = [whole.configs[t]["phase"] for t in whole.finished]
    n_search = sum(1 for p in phases if p in ("grid", "optuna"))
    n_pinned = n_search + phases.count("pin")
    steps = {"searching": n_search // 2, "pinning": n_search + 2, "measuring": n_pinned + 1}
    for _ in range(steps[kill_at]):
        first.step()
    placed = Counter(c["phase"] for c in first.configs.values())
    assert bool(placed["confirm"]) == (kill_at == "measuring")
    assert bool(placed["pin"]) == (kill_at != "searching")
    # the kill: one running trial continues from its checkpoint, the other runs again
    records = [
        TrialRecord(t, DONE, first.configs[t], t, row(t, first.configs[t])) for t in first.finished
    ]
    for trial_id, status in zip(first.searcher.state.live, (CONTINUE, RERUN), strict=False):
        records.append(TrialRecord(trial_id, status, first.configs[trial_id], trial_id))
    plan = build_plan(cfg, tmp_path, run_name="a-1")
    second = Driver(PhasedSearcher(plan, max_concurrent=2, history=History(records)), row)
    second.configs.update(first.configs)
    second.n = first.n
    while second.step():
        pass
    ran = [r.trial_id for r in records if r.status == DONE] + second.finished
    keys = Counter(config_key(second.configs[t]) for t in ran)
    assert max(keys.values()) == 1, keys  # nothing twice
    measured = [second.configs[t] for t in ran if second.configs[t]["phase"] == "confirm"]
    assert sorted(c["batch_size"] for c in measured) == [8, 32, 128]
    pinned = Counter(
        second.configs[t]["batch_size"] for t in ran if second.configs[t]["phase"] == "pin"
    )
    assert pinned == {8: 2, 32: 2, 128: 2}
    assert second.searcher.state.finished
    for name, trials in studies_in(tmp_path / "optuna-journal.log").items():
        states = Counter(t.state.name for t in trials)
        assert set(states) <= {"COMPLETE", "FAIL"}, (name, states)
        told = Counter(t.user_attrs["trial_id"] for t in trials if t.state.name == "COMPLETE")
        assert max(told.values()) == 1, (name, told)


def test_a_sweep_resumed_after_its_last_trial_looks_again_and_ends(tmp_path, full_run):
    """Killed after every trial had finished (say, while writing the report): the resumed
    searcher looks at the stop again on all the trials, runs nothing, and ends."""
    _, whole = full_run
    records = [
        TrialRecord(t, DONE, whole.configs[t], t, row(t, whole.configs[t])) for t in whole.finished
    ]
    plan = build_plan(load_config(SMOKE, ADAPTIVE), tmp_path, run_name="a-1")
    again = Driver(PhasedSearcher(plan, max_concurrent=2, history=History(records)), row)
    assert not again.step()  # nothing to run
    assert again.searcher.state.finished and not again.configs
    assert "[design] the verdict holds on all" in again.searcher.state.notes[-1]


def test_one_trial_at_a_time_the_decided_look_is_not_repeated(tmp_path, monkeypatch):
    """With one trial slot and no noise-scale trials, the look that decided saw every trial:
    the stop holds without a second calibrated refit of the same trials."""
    strict = []
    look = design.look

    def spy(*a, **k):
        strict.append(a[9] if len(a) > 9 else k.get("strict_now", False))
        return look(*a, **k)

    monkeypatch.setattr(design, "look", spy)
    cfg = load_config(SMOKE, [*ADAPTIVE, "measure_noise_scale=false", "adaptive.pin_trials=0"])
    plan = build_plan(cfg, tmp_path, run_name="o-1")
    driver = Driver(PhasedSearcher(plan, max_concurrent=1), row)
    while driver.step():
        pass
    notes = driver.searcher.state.notes
    assert "[design] the verdict holds on all" in notes[-1] and notes[-1].endswith("linear")
    assert not any(strict)  # no look asked for a strict refit (the resume's does)


def test_a_spent_budget_stops_the_loop_and_says_so(tmp_path):
    cfg = load_config(SMOKE, [*ADAPTIVE, "budget.trials=6", "measure_noise_scale=false"])
    plan = build_plan(cfg, tmp_path, run_name="b-1")
    driver = Driver(PhasedSearcher(plan, max_concurrent=2), row)
    while driver.step():
        pass
    runs = [driver.configs[t] for t in driver.finished]
    assert Counter(r["phase"] for r in runs) == {"grid": 2, "optuna": 6}
    assert "[design] budget spent (6 adaptive trials" in " ".join(driver.searcher.state.notes)


@pytest.mark.parametrize(
    ("sets", "words"),
    [
        (["budget.trials=null", "budget.minutes=null"], "set budget: {trials: N}"),
        (["optuna.trials_per_batch_size=8"], "belong to design: fixed"),
        (["adaptive.batch_sizes=[8,16]"], "at least 3 batch sizes"),
        (["adaptive.batch_sizes_max=64"], "below the largest batch size"),
        (["adaptive.pin_trials=-1"], "adaptive.pin_trials must be >= 0"),
        (["design=adaptiv"], "did you mean 'adaptive'"),
    ],
)
def test_a_bad_adaptive_setting_is_one_clear_error(sets, words):
    with pytest.raises(ConfigError, match=None) as err:
        load_config(SMOKE, [*ADAPTIVE, *sets])
    assert words in str(err.value)


def test_the_dry_run_describes_the_loop_and_its_budget():
    cfg = load_config(SMOKE, [*ADAPTIVE, "adaptive.batch_sizes_max=512", "budget.minutes=9"])
    text = dry_run(cfg, 2, 0)
    assert "design loop (design: adaptive) over batch sizes [8, 32, 128]" in text
    assert "doubles the largest, up to 512" in text
    assert "at most 80 trials or 9 minutes" in text
    assert "one trial per batch size at its modelled best lr measures" in text
    assert "looked at again on every finished trial" in text
