# The two commands of the README. Each creates (or reuses) the virtual environment
# under the checkout and installs everything from the project's own files.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: drill test test-unit lint venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

## make drill: bring the national system up, run the attack catalog under Locust citizen load, judge every
## service against its RTO and RPO, write the report and the signed evidence bundle, tear down
drill: $(STAMP)
	$(BIN)/paydar drill

## make test: lint and strict type check of every file, then the whole suite (unit + integration
## with real processes); CI runs exactly this
test: lint
	$(BIN)/python -m pytest

## make lint: ruff and mypy --strict over paydar/ and tests/ (configured in pyproject.toml)
lint: $(STAMP)
	$(BIN)/ruff check paydar tests
	$(BIN)/mypy

## make test-unit: the quick loop while iterating (CI never runs less than `make test`)
test-unit: $(STAMP)
	$(BIN)/python -m pytest tests/unit

clean:
	rm -rf $(VENV) .pytest_cache
