# Two entry points for a fresh clone (Python 3.11+): `make demo` and `make test`.
# Both create .venv and install the project into it on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export DO_NOT_TRACK ?= 1

.PHONY: demo test lint install

$(BIN)/enrich: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]' -c .ci/constraints.txt
	touch $(BIN)/enrich

install: $(BIN)/enrich

demo: install
	$(BIN)/enrich demo

test: install
	$(BIN)/ruff check src tasks flows tests benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/pytest -q

# Everything that needs no Prefect server and no slow benchmark (a few minutes on 2 cores).
.PHONY: test-fast
test-fast: install
	$(BIN)/ruff check src tasks flows tests benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/pytest -q -m "not prefect and not slow"

lint: install
	$(BIN)/ruff check src tasks flows tests benchmarks
	$(BIN)/ruff format --check src tasks flows tests benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports
