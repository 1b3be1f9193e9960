# imnm-safety: two commands for users (`make run`, `make test`), the rest for developers.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
JARS   := deploy/kafka/lib/.fetched

.PHONY: setup run test test-unit test-integration lint schemas bench stress clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=23"
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

$(JARS): deploy/kafka/pom.xml | $(STAMP)
	$(PY) -m imnm_common.kafka.local_broker --fetch-only
	touch $(JARS)

setup: $(STAMP) $(JARS)

run: setup
	$(VENV)/bin/imnm up --demo

test: setup
	$(PY) -m pytest

test-unit: $(STAMP)
	$(PY) -m pytest tests/unit -m "not integration"

test-integration: setup
	$(PY) -m pytest tests/integration tests/e2e

lint: $(STAMP)
	$(VENV)/bin/ruff check services tests bench
	$(VENV)/bin/mypy

schemas: $(STAMP)
	$(VENV)/bin/imnm schemas --dir schemas

bench: setup
	$(PY) -m bench.run

# workers join, leave and die while a backlog is read; exits 1 if any event was lost
stress: setup
	$(PY) -m bench.rebalance_loss

clean:
	rm -rf $(VENV) deploy/kafka/lib .imnm-data .pytest_cache .mypy_cache .ruff_cache
