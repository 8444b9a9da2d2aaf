"""Dependencies that don't fight the user's: ranges in pyproject.toml, the exact versions tested
here in constraints.txt (which make passes to pip), each package listed once, where it belongs."""

import importlib.metadata
import re
import tomllib

from conftest import ROOT
from packaging.requirements import Requirement
from packaging.version import Version

PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
DEPENDENCIES = {Requirement(r).name.lower(): Requirement(r) for r in PROJECT["dependencies"]}
EXTRAS = {
    extra: {Requirement(r).name.lower(): Requirement(r) for r in reqs}
    for extra, reqs in PROJECT["optional-dependencies"].items()
}
CONSTRAINTS = {
    Requirement(line).name.lower(): Requirement(line)
    for line in (ROOT / "constraints.txt").read_text().splitlines()
    if line.strip() and not line.startswith("#")
}


def test_torch_is_a_range_that_a_newer_torch_satisfies():
    for name, newer in (("torch", "2.20.0"), ("torchvision", "0.35.0")):
        spec = DEPENDENCIES[name].specifier
        assert "==" not in str(spec), f"{name} is pinned in pyproject.toml: {spec}"
        assert spec.contains(newer), f"installing this would downgrade {name} {newer}"
        assert spec.contains(str(next(iter(CONSTRAINTS[name].specifier)).version))


def test_constraints_hold_the_exact_versions_this_machine_runs():
    pins = {name: str(req.specifier) for name, req in CONSTRAINTS.items()}
    assert pins["torch"] == "==2.14.1" and pins["torchvision"] == "==0.29.1"
    for name, req in CONSTRAINTS.items():
        (spec,) = req.specifier
        assert spec.operator == "==", f"constraints.txt: {req} is not an exact version"
        installed = importlib.metadata.version(name)
        assert Version(installed.split("+")[0]) == Version(spec.version), (name, installed)
        assert DEPENDENCIES[name].specifier.contains(spec.version), name  # within the range


def test_make_installs_with_the_constraints():
    makefile = (ROOT / "Makefile").read_text()
    rule = re.search(r"^\.venv/\.installed:([^\n]*)\n((?:\t[^\n]*\n)+)", makefile, re.M)
    assert rule and "constraints.txt" in rule.group(1)  # a changed pin reinstalls
    assert "pip install -q -c constraints.txt -e '.[dev]'" in rule.group(2)


def test_each_package_is_listed_once_where_it_belongs():
    assert "tensorboardx" not in DEPENDENCIES  # it comes with ray[tune]
    ray_tune = [Requirement(r) for r in importlib.metadata.requires("ray") or []]
    assert any(r.name.lower() == "tensorboardx" and "tune" in str(r.marker) for r in ray_tune)
    assert "optuna-dashboard" in DEPENDENCIES  # make optuna-dashboard is a user command
    assert "optuna-dashboard" not in EXTRAS["dev"]
    assert {"mlflow-skinny"} == set(EXTRAS["mlflow"]) and {"wandb"} == set(EXTRAS["wandb"])
    assert "lr-batch-sweep" in EXTRAS["dev"]  # dev = the tools + the mlflow extra
    assert EXTRAS["dev"]["lr-batch-sweep"].extras == {"mlflow"}
