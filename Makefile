# `make run` and `make test` are the two commands: each sets up what it needs first.
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.setup-stamp
PYTHON ?= python3

.PHONY: setup run test bench ui lint system-deps

setup: $(STAMP)

# Re-installs only when pyproject.toml changes. A plain editable install: with the src layout setuptools puts
# src/ itself on sys.path, so Hydra's plugin discovery sees hydra_plugins as it would from a wheel.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	$(BIN)/pip download -q --no-deps -d $(VENV)/wheels hydra-optuna-sweeper==1.2.0  # for tests/test_install.py
	touch $(STAMP)

# The default sweep on the bundled digits data set (no network).
run: setup
	$(BIN)/sweep -m +experiment=quickstart
	@echo "Browse the runs: make ui  (MLflow UI on http://127.0.0.1:5000)"

# System packages the tests drive for real: Chromium for the UI test, PostgreSQL (scripts/pg-server) for shared studies.
system-deps:
	@bash .ci/system-deps

test: setup system-deps
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/pytest -q

bench: setup
	$(BIN)/python benchmarks/trainer.py
	$(BIN)/python benchmarks/deepfool.py

UI_HOST  ?= 127.0.0.1
UI_PORT  ?= 5000
UI_STORE ?= sqlite:///mlflow.db
ui: setup
	@echo "MLflow UI: http://$(UI_HOST):$(UI_PORT)  (store: $(UI_STORE))"
	$(BIN)/mlflow server --backend-store-uri $(UI_STORE) --host $(UI_HOST) --port $(UI_PORT) --workers 1

lint: setup
	$(BIN)/ruff check .
	$(BIN)/mypy
