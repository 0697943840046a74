# `make run` and `make test` are the two commands: each sets up what it needs first.
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.setup-stamp
PYTHON ?= python3

.PHONY: setup run test test-fast docs bench ui lint system-deps

setup: $(STAMP)

# Re-installs only when a pyproject.toml changes. Both distributions, editable: the sweeper (sweeper/, the Hydra
# plugin and study tools, no torch) and sweep (the PyTorch trial app, which depends on it). With the src layout
# setuptools puts each src/ itself on sys.path, so Hydra's plugin discovery sees hydra_plugins as from a wheel.
$(STAMP): pyproject.toml sweeper/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ./sweeper -e '.[dev]'
	$(BIN)/pip download -q --no-deps -d $(VENV)/wheels hydra-optuna-sweeper==1.2.0  # for sweeper/tests/test_install.py
	$(BIN)/pip wheel -q -w $(VENV)/wheels ./sweeper  # the sweeper and its dependencies as wheels: a torch-free venv, offline
	touch $(STAMP)

# The default sweep on the bundled digits data set (no network).
run: setup
	$(BIN)/sweep -m +experiment=quickstart
	@echo "Browse the runs: make ui  (MLflow UI on http://127.0.0.1:5000)"

# System packages the tests drive for real: Chromium, PostgreSQL, SLURM and munge (scripts/pg-server, slurm-cluster).
system-deps:
	@bash .ci/system-deps

test: setup system-deps
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/pytest -q

# Your own loop: the same checks without the tests marked slow (real sweeps and servers). CI runs `make test`.
test-fast: setup
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/pytest -q -m "not slow"

# The documentation site into site/, strictly: a broken link or anchor, or a page left out, fails the build.
docs: setup
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

bench: setup
	$(BIN)/python benchmarks/trainer.py
	$(BIN)/python benchmarks/deepfool.py
	$(BIN)/python benchmarks/workers.py
	$(BIN)/python benchmarks/stacked.py
	$(BIN)/python benchmarks/report.py

UI_HOST  ?= 127.0.0.1
UI_PORT  ?= 5000
UI_STORE ?= sqlite:///mlflow.db
UI_ARTIFACTS ?= mlartifacts
ui: setup
	@echo "MLflow UI: http://$(UI_HOST):$(UI_PORT)  (store: $(UI_STORE))"
	$(BIN)/mlflow server --backend-store-uri $(UI_STORE) --artifacts-destination $(UI_ARTIFACTS) --host $(UI_HOST) \
		--port $(UI_PORT) --workers 1

lint: setup
	$(BIN)/ruff check .
	$(BIN)/mypy
