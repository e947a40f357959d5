# calcinet: the whole set-up is `make train` or `make test` on a machine with Python 3.11 and make.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
UV_VERSION := 0.13.9
UV := $(VENV)/bin/uv
PY := $(VENV)/bin/python
# Everything below is resolved from uv.lock; `make lock` refreshes it after editing pyproject.toml.
export UV_PROJECT_ENVIRONMENT := $(VENV)
export UV_LINK_MODE ?= hardlink
# Byte-code is compiled once at install: where PYTHONDONTWRITEBYTECODE is set (many container
# images set it) Python would otherwise compile every imported module again in every process,
# 10 s or more of each command's start.
export UV_COMPILE_BYTECODE := 1
# `make train model=resnet18 trainer.max_epochs=3`: every other VAR=value is a Hydra override.
HYDRA_OVERRIDES := $(filter-out PYTHON=% ARGS=% PYTEST_ARGS=% UV_LINK_MODE=% TEST_WORKERS=%,$(MAKEOVERRIDES))

.PHONY: setup train evaluate test test-fast lint lock clean mlflow-ui

setup: $(VENV)/.synced

$(UV):
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

$(VENV)/.synced: $(UV) pyproject.toml uv.lock Makefile
	$(UV) sync --frozen --python $(PY)
	@touch $@

train: setup
	$(VENV)/bin/calcinet-train $(HYDRA_OVERRIDES) $(ARGS)

# `make evaluate ckpt_path=outputs/train/runs/<time>`: report, pictures and predictions.
evaluate: setup
	$(VENV)/bin/calcinet-evaluate $(HYDRA_OVERRIDES) $(ARGS)

# Tests run in TEST_WORKERS processes (pytest-xdist; most tests drive single-threaded command
# lines, so two workers use both cores of a small machine); TEST_WORKERS=0 runs them in one.
TEST_WORKERS ?= 2
test: setup
	$(PY) -m pytest -n $(TEST_WORKERS) --dist worksteal $(PYTEST_ARGS)

test-fast: setup
	$(PY) -m pytest -n $(TEST_WORKERS) --dist worksteal -m "not slow" $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ruff check src tests scripts

lock: $(UV)
	$(UV) lock

mlflow-ui: setup
	$(VENV)/bin/mlflow ui --backend-store-uri sqlite:///mlflow.db --host 127.0.0.1 --port 5000

clean:
	rm -rf $(VENV) outputs mlflow.db .pytest_cache
