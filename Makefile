# Peerway: `make run` serves on embedded SQLite; `make test` runs the whole suite on SQLite and PostgreSQL.
PYTHON ?= python3.11
VENV   ?= .venv
BIN     = $(VENV)/bin
export PEERWAY_HOST ?= 127.0.0.1
export PEERWAY_PORT ?= 8000
EHR_PORT ?= 8103

.PHONY: run run-with-ehr test check install install-test lint typecheck test-sqlite test-postgres test-deep mutation demo bench clean fhir-package

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

tests/idp/node_modules/.package-lock.json: tests/idp/package-lock.json
	npm ci --prefix tests/idp --no-audit --no-fund --loglevel=error

# axe-core for the browser tests (tests/browser), which drive Debian's Chromium (/usr/bin/chromium; .ci/run
# installs it) with Playwright for Python; Playwright's own browser download is never used.
tests/browser/node_modules/.package-lock.json: tests/browser/package-lock.json
	npm ci --prefix tests/browser --no-audit --no-fund --loglevel=error

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test tests/ehr/node_modules/.package-lock.json tests/idp/node_modules/.package-lock.json \
		tests/browser/node_modules/.package-lock.json

run: install
	@mkdir -p var
	$(BIN)/peerway serve

# The README's quick start: Peerway (dev mode, a fresh SQLite database) on PEERWAY_PORT with the bundled test EHR
# (in memory, enforcing our profiles) on EHR_PORT beside it, contacts written back to it; Ctrl-C stops both.
run-with-ehr: install tests/ehr/node_modules/.package-lock.json
	@mkdir -p var
	EHR_PORT=$(EHR_PORT) $(BIN)/python -m tests.run_with_ehr

# Peerway's FHIR NPM package (profiles, code systems, value sets, operations) for validators and IG tools.
fhir-package: install
	$(BIN)/python -m fhir_profiles package --out build/fhir

lint: install-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/kubernetes-validate --strict --quiet deploy/k8s/*.yaml

typecheck: install-test
	$(BIN)/mypy service consent fhir_profiles tests bench

# The consent properties touch no storage: the SQLite run checks over 100,000 generated cases (hypothesis profile
# `ci`), the PostgreSQL run a quick sample (tests/unit/consent/conftest.py).
test-sqlite: install-test
	PEERWAY_TEST_DB=sqlite PEERWAY_HYPOTHESIS=ci $(BIN)/python -m pytest -q

test-postgres: install-test
	PEERWAY_TEST_DB=postgres PEERWAY_HYPOTHESIS=quick $(BIN)/python -m pytest -q

test: lint typecheck test-sqlite test-postgres

# A fast loop while working: lint, types, and the unit and API tests on SQLite with few generated cases.
check: lint typecheck
	PEERWAY_TEST_DB=sqlite PEERWAY_HYPOTHESIS=quick $(BIN)/python -m pytest -q -x tests/unit tests/api

# The consent properties with ten times the cases of `make test` (about a million).
test-deep: install-test
	PEERWAY_HYPOTHESIS=deep $(BIN)/python -m pytest -q tests/unit/consent

# Mutation testing of the consent engine (not part of `make test`; about ten minutes on 2 cores): mutmut mutates
# consent/, judges each mutant by tests/unit/consent with derandomized hypothesis, and the gate fails unless the
# score is at least 95 % and every survivor is listed in consent/README.md as unable to change a decision.
mutation: install-test
	rm -rf mutants
	PEERWAY_HYPOTHESIS=mutation $(BIN)/mutmut run --max-children 2 > /dev/null
	$(BIN)/python tests/mutation_gate.py

# Delivery under faults alone (they also run in `make test`): worker processes killed with -9, EHR outages,
# tokens revoked, 422s replayed; on both backends, with their figures at the end.
.PHONY: test-faults
test-faults: install-test
	PEERWAY_TEST_DB=sqlite $(BIN)/python -m pytest -q -m faults tests/faults
	PEERWAY_TEST_DB=postgres $(BIN)/python -m pytest -q -m faults tests/faults

# KEEP=1: afterwards Peerway serves the demo's data on PEERWAY_PORT and the EHR stays on EHR_PORT, until Ctrl-C.
demo: install-test
	KEEP=$(KEEP) EHR_PORT=$(EHR_PORT) $(BIN)/python -m tests.demo

# Real servers (pinned to CPU 0, load from CPU 1: bench/load.py, raw HTTP/1.1, whose own ceiling load_bench.py
# prints first), each target alternated with its baseline, on SQLite and PostgreSQL; every bench prints its
# ratios last. Under 5 minutes on 2 cores (docs/deployment.md has figures). intake_bench.py prints the server's
# CPU per summary read too; bench/summary_cpu_bench.py alone measures only that, for before/after a change.
bench: install-test tests/ehr/node_modules/.package-lock.json
	$(BIN)/python bench/consent_bench.py
	$(BIN)/python bench/matching_bench.py
	$(BIN)/python bench/search_bench.py
	$(BIN)/python bench/load_bench.py
	$(BIN)/python bench/intake_bench.py
	$(BIN)/python bench/outbox_bench.py
	$(BIN)/python bench/scale_bench.py

clean:
	rm -rf $(VENV) var build test-output tests/ehr/node_modules tests/idp/node_modules tests/browser/node_modules .pytest_cache .mypy_cache .ruff_cache
