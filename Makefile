# The README's two commands: `make pipeline` and `make test`. Both create the environment
# (.venv, pinned dependencies from pyproject.toml, every other package held by constraints.txt)
# on first use.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

export PATH := $(CURDIR)/$(BIN):$(PATH)
# Workers of local Spark and MLflow must use the venv interpreter, never a system python3.
export PYSPARK_PYTHON := $(CURDIR)/$(BIN)/python
export TZ := UTC

.PHONY: pipeline test test-fast test-spark lint install clean

$(STAMP): pyproject.toml constraints.txt
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) on PATH (or: make PYTHON=python3)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## Run the whole pipeline on the built-in simulated data set (dvc repro).
pipeline: $(STAMP)
	$(BIN)/dvc repro

## Run the whole test suite (unit, Spark, notebooks, browser and the end-to-end dvc repro).
test: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadfile

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow and not spark and not browser"

test-spark: $(STAMP)
	$(BIN)/python -m pytest -m spark

## Style (ruff) and the import layers (import-linter contracts in pyproject.toml).
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports

## Delete the pipeline's outputs; your own files in data/raw/ stay (they are inputs, not outputs).
clean:
	rm -rf data/simulated data/validated data/quarantine data/labels data/features data/scores reports models/churn models/challenger mlflow.db mlflow.db.gate.lock mlartifacts
