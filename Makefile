# segstream: every target installs what it needs into .venv first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install services-up services-down services-status browser test test-single test-cluster unit demo lint clean collector-load

install: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "segstream needs Python 3.11 or newer (found " + sys.version.split()[0] + ")")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	PYTHONWARNINGS=ignore $(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

services-up: install
	$(BIN)/segstream services up

services-down: install
	$(BIN)/segstream services down

services-status: install
	$(BIN)/segstream services status

## make browser: Debian's chromium for the dashboard's browser test (apt-get if missing).
browser:
	bash scripts/install-chromium.sh

## make test: install, start Kafka, Redis and a local Redis Cluster, then run every test
## against one redis-server (unit and integration) and the integration tests against the
## Redis Cluster, the two passes side by side (scripts/test.sh says why).
test: install browser
	bash scripts/test.sh

## make test-single: every test against one redis-server.
test-single: services-up browser
	$(BIN)/python -m pytest

## make test-cluster: the integration suite against a local 3-master Redis Cluster on
## 127.0.0.1:7001-7003, which `segstream services up` starts; stop it with
## SEGSTREAM_REDIS_CLUSTER=1 SEGSTREAM_REDIS_URL=redis://127.0.0.1:7001/0 make services-down
test-cluster: export SEGSTREAM_REDIS_CLUSTER := 1
test-cluster: export SEGSTREAM_REDIS_URL := redis://127.0.0.1:7001/0
test-cluster: install browser
	$(BIN)/segstream services up
	$(BIN)/python -m pytest tests/integration

## make unit: the pure tests only; no servers needed.
unit: install
	$(BIN)/python -m pytest tests/unit segmenters

## make demo: a worker and about a minute of simulated shop traffic (DEMO_SECONDS).
demo: services-up
	bash scripts/demo.sh

## make collector-load: wrk against the HTTP collector; writes docs/collector_benchmarks.md.
collector-load: services-up
	PYTHON=$(BIN)/python bash scripts/collector_load.sh

lint: install
	$(BIN)/ruff check streams segmenters tests
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis .segstream
