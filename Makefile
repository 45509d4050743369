# The two commands that matter: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
DEVSTACK := $(PYTHON) deploy/local/devstack.py
# Parallel test processes; each starts its own Redis and MongoDB-compatible server.
TEST_WORKERS ?= 2
# A failed test is not run again: a flaky test is a bug, in the test or in the product.
# TEST_RERUNS=N reruns failures (reported as RERUN) only when you ask for it.
TEST_RERUNS ?= 0

.PHONY: setup run test test-unit lint bench clean

setup:
	$(DEVSTACK) setup

run: setup
	$(DEVSTACK) run

test: setup
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile --reruns $(TEST_RERUNS) -rfER -p no:cacheprovider tests --ignore=tests/bench

test-unit: setup
	$(PY) -m pytest -p no:cacheprovider tests/unit

# pip-audit checks the pinned versions of constraints.txt against the advisory data of
# PyPI's JSON API (network: PyPI only). Exceptions, each with its reason:
#   GHSA-wj6h-64fc-37mp / PYSEC-2026-1325 (CVE-2024-23342, ecdsa: Minerva timing attack on
#     ECDSA signing; no fixed release): ecdsa comes in only through python-jose, and tokens
#     are RS256 only (provisioning_common.tokens.ALGORITHM), signed and verified by
#     jose's `cryptography` backend: ecdsa never signs anything here.
PIP_AUDIT_IGNORE := --ignore-vuln GHSA-wj6h-64fc-37mp --ignore-vuln PYSEC-2026-1325

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports
	$(VENV)/bin/pip-audit --progress-spinner off --no-deps --disable-pip -r constraints.txt $(PIP_AUDIT_IGNORE)

# The bench also installs the `bench` dependency group (Celery, the storage bench's baseline).
bench:
	$(DEVSTACK) setup --group bench
	$(PY) -m pytest -p no:cacheprovider -s tests/bench

clean:
	rm -rf $(VENV) .local-stack .mypy_cache .ruff_cache .pytest_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
