# Two entry points (see README "Quick start"): `make demo` and `make test`.
# Both create the local virtual environment .venv on first use.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
STUDY  ?= cases/activsg200_ieee8500.toml
PYTEST_ARGS ?=

.PHONY: venv demo test test-fast clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[hpc,cases,dev]'
	$(BIN)/hpcsim prepare
	touch $(STAMP)

demo: venv
	$(BIN)/hpcsim run $(STUDY)

test: venv
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: venv
	$(BIN)/python -m pytest -m "unit" $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info
