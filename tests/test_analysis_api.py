"""The notebook API: `from analysis import load_results, analyze`, and `import analysis` alone
imports and changes nothing."""

import os
import subprocess
import sys

import pandas as pd
from conftest import ROOT

from analysis.synthetic import Law, SweepSpec, write_results

SPEC = SweepSpec(batch_sizes=(8, 16, 32), lr_offsets=(-0.5, 0.0, 0.5), seeds=1, grid=False)

CHECK = """
import os, sys, warnings, logging
env, filters, handlers = dict(os.environ), list(warnings.filters), list(logging.root.handlers)
before = set(sys.modules)
import analysis
new = {m.split(".")[0] for m in set(sys.modules) - before}
print(sorted(new))
print(dict(os.environ) == env, warnings.filters == filters, logging.root.handlers == handlers)
print(sorted(analysis.__all__))
"""


def test_import_analysis_imports_nothing_else_and_changes_nothing(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", CHECK], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    new, unchanged, exported = out.stdout.splitlines()
    assert new == "['analysis']"  # not even typing; no pandas, numpy, matplotlib, torch, Ray
    assert unchanged == "True True True"
    assert "'analyze'" in exported and "'load_results'" in exported
    assert not any(tmp_path.iterdir())  # nothing written


def test_load_results_and_analyze_return_tables_and_the_fit_without_writing(tmp_path):
    write_results(tmp_path, Law("linear", lr0=0.01), SPEC)
    files = sorted(p for p in tmp_path.rglob("*"))
    from analysis import Analysis, analyze, load_results

    res = load_results(tmp_path)
    assert isinstance(res.trials, pd.DataFrame) and isinstance(res.epochs, pd.DataFrame)
    assert len(res.trials) == 9 and len(res.epochs) == 9 * 5
    a = analyze(tmp_path, n_boot=0)
    assert isinstance(a, Analysis) and isinstance(a.best, pd.DataFrame)
    assert a.best["batch_size"].tolist() == [8, 16, 32]
    assert a.verdict.verdict in ("linear", "sqrt", "neither", "inconclusive")
    assert a.inference.alpha is not None
    assert sorted(p for p in tmp_path.rglob("*")) == files  # the analysis wrote nothing


def test_an_unknown_name_is_an_attribute_error():
    import analysis

    try:
        analysis.no_such_thing  # noqa: B018
    except AttributeError as err:
        assert "no_such_thing" in str(err)
    else:
        raise AssertionError("analysis.no_such_thing did not fail")
    from analysis import load  # submodules still import as before

    assert load.load_results is analysis.load_results


def test_the_readme_snippet_runs_as_written(tmp_path, monkeypatch, capsys):
    """The notebook snippet of README.md ("The results as data"), pasted into a notebook
    whose working folder holds results/default."""
    readme = (ROOT / "README.md").read_text()
    blocks = readme.split("```python\n")[1:]
    (snippet,) = [b.split("```")[0] for b in blocks if "from analysis import load_results" in b]
    write_results(tmp_path / "results", Law("linear", lr0=0.01), SPEC, name="default")
    monkeypatch.chdir(tmp_path)
    exec(compile(snippet, "README.md", "exec"), {})  # our own documentation, as pasted
    verdict = capsys.readouterr().out.split()[0]
    assert verdict in ("linear", "sqrt", "neither", "inconclusive")
