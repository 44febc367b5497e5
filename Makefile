# The two commands of the README, and the checks CI runs. Needs only Python 3.11+ and make.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint typecheck imports check bench history soak clean constraints

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "dealreg needs Python 3.11 or newer (set PYTHON=...)")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

run: $(STAMP) ## start the three services on the embedded PostgreSQL
	$(BIN)/dealreg run

test: $(STAMP) ## the whole suite: unit, integration, end to end, against real PostgreSQL
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

imports: $(STAMP)
	$(BIN)/lint-imports

check: lint typecheck imports test

bench: $(STAMP) ## by hand: the benchmark suite, one table (BENCHMARKS.md); BENCH_ARGS=--quick for minutes
	$(BIN)/python -m bench $(BENCH_ARGS)

history: $(STAMP) ## by hand: a history of 100,000 events across the three services, over their APIs (BENCHMARKS.md)
	$(BIN)/python -m bench.history $(HISTORY_ARGS)

SOAK_MINUTES ?= 30
soak: $(STAMP) ## by hand: the model-based test (tests/model) with random examples for SOAK_MINUTES minutes
	SOAK_MINUTES=$(SOAK_MINUTES) $(BIN)/python -m pytest tests/model -k test_soak -s -q \
		-p no:cacheprovider --basetemp=$${TMPDIR:-/tmp}/dealreg-soak

constraints: $(STAMP) ## refresh the pinned versions after changing pyproject.toml
	$(BIN)/python -m pip freeze --exclude-editable | grep -v '^-e ' > constraints.txt

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
