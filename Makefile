# Peerway: `make run` serves on embedded SQLite; `make test` runs the whole suite on SQLite and PostgreSQL.
PYTHON ?= python3.11
VENV   ?= .venv
BIN     = $(VENV)/bin
export PEERWAY_HOST ?= 127.0.0.1
export PEERWAY_PORT ?= 8000

.PHONY: run test install install-test lint typecheck test-sqlite test-postgres demo bench clean

$(BIN)/python:
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "Python 3.11 is required ($(PYTHON) not found)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	@touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	@touch $@ $(VENV)/.installed

tests/ehr/node_modules/.package-lock.json: tests/ehr/package-lock.json
	npm ci --prefix tests/ehr --no-audit --no-fund --loglevel=error

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test tests/ehr/node_modules/.package-lock.json

run: install
	@mkdir -p var
	$(BIN)/peerway serve

lint: install-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: install-test
	$(BIN)/mypy service consent fhir_profiles tests bench

test-sqlite: install-test
	PEERWAY_TEST_DB=sqlite $(BIN)/python -m pytest -q

test-postgres: install-test
	PEERWAY_TEST_DB=postgres $(BIN)/python -m pytest -q

test: lint typecheck test-sqlite test-postgres

# Delivery under faults alone (they also run in `make test`): worker processes killed with -9, EHR outages,
# tokens revoked, 422s replayed; on both backends, with their figures at the end.
.PHONY: test-faults
test-faults: install-test
	PEERWAY_TEST_DB=sqlite $(BIN)/python -m pytest -q -m faults tests/faults
	PEERWAY_TEST_DB=postgres $(BIN)/python -m pytest -q -m faults tests/faults

demo: install-test
	$(BIN)/python -m tests.demo

bench: install-test
	$(BIN)/python bench/consent_bench.py
	$(BIN)/python bench/intake_bench.py
	$(BIN)/python bench/matching_bench.py

clean:
	rm -rf $(VENV) var tests/ehr/node_modules .pytest_cache .mypy_cache .ruff_cache
