# The two commands of the README. Each creates (or reuses) the virtual environment
# under the checkout and installs everything from the project's own files.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
# The editable install is strict (a tree of links under build/, which type checkers can
# follow): adding or removing a module or packaged file needs a reinstall, so the stamp is
# named for the list of those files.
PACKAGED := $(shell find paydar infra node gateway vault probes failover chaos runbooks \
              \( -name '*.py' -o -name '*.json' -o -name '*.md' \) -not -path '*/__pycache__/*' | sort | cksum | cut -d' ' -f1)
STAMP  := $(VENV)/.installed-$(PACKAGED)

.PHONY: drill test test-unit venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	rm -rf build/__editable__.* $(VENV)/.installed*
	$(BIN)/pip install --quiet -e '.[test]' --config-settings editable_mode=strict
	touch $(STAMP)

## make drill: bring the national system up, exercise it, fail over by hand and automatically, check, tear down
drill: $(STAMP)
	$(BIN)/paydar drill

## make test: the whole suite (unit + integration with real processes); CI runs exactly this
test: $(STAMP)
	$(BIN)/python -m pytest

## make test-unit: the quick loop while iterating (CI never runs less than `make test`)
test-unit: $(STAMP)
	$(BIN)/python -m pytest tests/unit

clean:
	rm -rf $(VENV) .pytest_cache build
