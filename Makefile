# Short aliases; see README.md. Variables: CONFIG=, NAME=, STORAGE=, ADDRESS=, SHARED=1,
# JOURNAL=, HOST=, ARGS=
PY      := .venv/bin/python
CONFIG  ?= sweep/configs/default.yaml
STORAGE ?= results
NAME    ?=
ADDRESS ?=
HOST    ?= 127.0.0.1
EXP      = $(STORAGE)/$(or $(NAME),default)
SWEEP_ARGS = --config $(CONFIG) --storage $(STORAGE) $(if $(NAME),--name $(NAME)) \
	$(if $(ADDRESS),--address $(ADDRESS)) $(if $(SHARED),--shared-storage) \
	$(if $(JOURNAL),--journal $(JOURNAL)) $(ARGS)

.PHONY: sweep test tensorboard report optuna-dashboard bench compare lint clean

sweep: .venv/.installed  ## run the sweep (resumes an unfinished one), then write the report
	$(PY) -m sweep $(SWEEP_ARGS)

test: .venv/.installed  ## the test suite (CPU, about 10 minutes on 2 cores; see tests/conftest.py)
	$(PY) -m pytest -q -n 2 --dist loadgroup --ignore=tests/test_kill_resume.py
	$(PY) -m pytest -q tests/test_kill_resume.py

tensorboard: .venv/.installed  ## live curves of every trial, on 127.0.0.1:6006
	$(PY) -m sweep.serve tensorboard --logdir $(STORAGE) --host $(HOST) --port 6006

report: .venv/.installed  ## (re)write the scaling-law report of $(STORAGE)/$(NAME or default)
	$(PY) -m analysis.fit_rule --results $(EXP)

optuna-dashboard: .venv/.installed  ## the Optuna studies of a sweep, on 127.0.0.1:8080
	$(PY) -m sweep.serve optuna-dashboard --host $(HOST) --port 8080 $(or $(JOURNAL),$(EXP)/optuna-journal.log)

bench: .venv/.installed  ## samples/s and sweep wall time against a tutorial-style baseline
	$(PY) -m benchmarks.bench
	$(PY) -m benchmarks.bench_analysis

COMPARE_SET ?= --set design=fixed --set optuna.trials_per_batch_size=5 --set confirm.top_k=1 --set confirm.seeds=2
compare: .venv/.installed  ## SGD and Adam on the same data and model, one report (~12 min, 2 cores)
	$(PY) -m sweep --config sweep/configs/default.yaml --name compare-sgd --storage $(STORAGE) --no-report $(COMPARE_SET) $(ARGS)
	$(PY) -m sweep --config sweep/configs/adam.yaml --name compare-adam --storage $(STORAGE) --no-report $(COMPARE_SET) $(ARGS)
	$(PY) -m analysis.compare_optimizers --results $(STORAGE)/compare-sgd $(STORAGE)/compare-adam --labels sgd adam --out $(STORAGE)/compare

lint: .venv/.installed  ## ruff: the lint rules, and the formatting (ruff format fixes it)
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .

clean:  ## remove caches (results/ and .venv/ are kept; delete them by hand)
	rm -rf .pytest_cache .ruff_cache build *.egg-info
	find . -name __pycache__ -not -path './.venv/*' -prune -exec rm -rf {} +

.venv/.installed: pyproject.toml constraints.txt  # ranges, and the exact versions tested here
	test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	touch $@
