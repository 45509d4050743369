# The two commands that matter: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
DEVSTACK := $(PYTHON) deploy/local/devstack.py
# Parallel test processes; each starts its own Redis and MongoDB-compatible server.
TEST_WORKERS ?= 2
# A test that fails is run again (at most TEST_RERUNS times) and reported as RERUN in the
# summary: on a loaded 2-core machine some multi-process timing tests are flaky, and a
# real failure still fails every run. Set TEST_RERUNS=0 to see every flake.
TEST_RERUNS ?= 2

.PHONY: setup run test test-unit lint bench clean

setup:
	$(DEVSTACK) setup

run: setup
	$(DEVSTACK) run

test: setup
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile --reruns $(TEST_RERUNS) -rR -p no:cacheprovider tests --ignore=tests/bench

test-unit: setup
	$(PY) -m pytest -p no:cacheprovider tests/unit

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

bench: setup
	$(PY) -m pytest -p no:cacheprovider -s tests/bench

clean:
	rm -rf $(VENV) .local-stack .mypy_cache .ruff_cache .pytest_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
