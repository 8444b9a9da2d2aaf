"""The trial contract is written once (trainables.contract) and everything else agrees with it."""

import dataclasses
import doctest
import importlib

import pytest
from conftest import ROOT, SMOKE, heavy_imports

from sweep import space
from sweep.config import SweepConfig, load_config
from trainables import contract, models
from trainables.contract import PARAM_KEYS, TRIAL_KEYS, Recipe, TrainConfig
from trainables.data import DATASETS, load_dataset
from trainables.schedule import SCHEDULES


@pytest.mark.parametrize(
    "statement",
    [
        "import trainables.contract",  # the analysis imports it
        "import sweep.config; sweep.config.load_config('sweep/configs/default.yaml')",
        "import trainables.data",
    ],
)
def test_the_contract_and_the_config_check_need_no_torch(statement):
    assert heavy_imports(statement) == []


def test_every_trial_holds_exactly_the_contracts_keys():
    cfg = load_config(SMOKE, ["optuna.trials_per_batch_size=2"])
    base = space.trial_base(cfg, "v")
    assert set(base) == set(PARAM_KEYS) - set(TRIAL_KEYS)
    for trial in space.grid_trials(cfg):
        assert set(trial) == set(PARAM_KEYS)
        contract.config_from_dict(trial)


def test_the_sweep_config_shares_the_recipes_keys_and_defaults():
    recipe = {f.name: f.default for f in dataclasses.fields(Recipe)}
    sweep = {f.name: f.default for f in dataclasses.fields(SweepConfig)}
    assert {k: sweep[k] for k in recipe} == recipe


def test_trial_configs_are_keyword_only():
    with pytest.raises(TypeError):
        TrainConfig(8, 0.1)  # type: ignore[misc]
    assert TrainConfig(batch_size=8, lr=0.1).phase == "grid"


def test_every_name_the_contract_allows_is_built():
    assert set(models.MODELS) == set(contract.MODELS)
    assert set(contract.MOMENTUM_OPTIMIZERS) | set(contract.ADAPTIVE_OPTIMIZERS) < set(
        contract.OPTIMIZERS
    )
    assert set(SCHEDULES) == {"constant", "cosine"}
    import torch

    from trainables.train import make_optimizer

    params = [torch.nn.Parameter(torch.zeros(2))]
    for name in contract.OPTIMIZERS:
        make_optimizer(TrainConfig(batch_size=8, lr=0.1, optimizer=name), params)


@pytest.mark.parametrize("name", ["synthetic", "quadratic", "mnist5k"])
def test_a_data_sets_registered_size_is_what_its_loader_gives(name, tmp_path):
    data_dir = str(tmp_path) if name == "mnist5k" else "/nonexistent-not-needed"
    assert load_dataset(name, data_dir).n_train == DATASETS[name].n_train


def test_accuracies_are_maximised_and_everything_else_minimised():
    assert contract.maximize("val_acc") and contract.maximize("val_ACC")
    assert not any(map(contract.maximize, ["val_loss", "train_loss", "steps_to_target"]))
    assert contract.reached("val_acc", 0.95, 0.93) and not contract.reached("val_acc", 0.9, 0.93)
    assert contract.reached("val_loss", 0.2, 0.3) and not contract.reached("val_loss", 0.4, 0.3)
    assert not contract.reached("val_loss", float("nan"), 0.3)


def test_the_examples_in_docstrings_run():
    for path in [
        *ROOT.glob("sweep/*.py"),
        *ROOT.glob("trainables/*.py"),
        *ROOT.glob("analysis/*.py"),
    ]:
        if ">>>" in path.read_text():
            module = importlib.import_module(f"{path.parent.name}.{path.stem}")
            result = doctest.testmod(module)
            assert result.failed == 0 and result.attempted > 0, path
