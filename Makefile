# Nexwatt developer commands. `make test` and `make demo` set everything up themselves.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
RUN := deploy/local/with-env
TIMED := deploy/local/timed
PYTEST := $(RUN) $(PY) -m pytest -p no:cacheprovider
# On a failed test run, show what the servers said.
LOGS_ON_FAIL = || { $(PY) deploy/local/stack.py logs --lines 40; exit 1; }

.PHONY: help setup stack-up stack-down stack-status topics schemas lint demo bench \
        test test-unit test-integration test-e2e test-faults test-deploy

help:
	@grep -E '^[a-z0-9-]+:.*## ' Makefile | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

setup: ## virtualenv, project, PostgreSQL/Redis packages, Kafka jars (idempotent)
	@$(TIMED) setup bash deploy/local/setup.sh

stack-up: setup ## start Kafka, PostgreSQL and Redis on 127.0.0.1 and create the topics
	@$(TIMED) stack-up $(PY) deploy/local/stack.py up
	@$(TIMED) topics $(RUN) $(VENV)/bin/nexwatt-admin create-topics

stack-down: ## stop the local stack (its data stays in .stack/)
	@$(PY) deploy/local/stack.py down

stack-status: ## is each server up and answering?
	@$(PY) deploy/local/stack.py status

schemas: ## export JSON Schemas, the AsyncAPI and onboarding's OpenAPI documents into schemas/
	@$(VENV)/bin/nexwatt-admin export-schemas --out schemas
	@$(VENV)/bin/python -m nexwatt_onboarding.openapi schemas/openapi.json

lint: ## ruff check and format check
	@$(TIMED) lint bash -c '$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .'

test-unit: ## tests that need no servers
	@$(TIMED) test-unit $(PYTEST) tests/unit

test-integration: ## tests against real Kafka, PostgreSQL and Redis
	@$(TIMED) test-integration $(PYTEST) tests/integration $(LOGS_ON_FAIL)

test-e2e: ## the running services, driven from outside
	@$(TIMED) test-e2e $(PYTEST) tests/e2e $(LOGS_ON_FAIL)

test-faults: ## a running service while Kafka or PostgreSQL restarts under it
	@$(TIMED) test-faults $(PYTEST) tests/faults $(LOGS_ON_FAIL)

test-deploy: ## Dockerfile, compose file and Helm chart, validated offline
	@$(TIMED) test-deploy $(PYTEST) tests/deploy

test: stack-up lint test-unit test-integration test-e2e test-faults test-deploy ## set up, start the stack, run every tier

demo: stack-up ## the story end to end: fleet, ISO instruction, dispatch, settlement (~2 min)
	@$(RUN) $(PY) deploy/local/demo.py $(if $(KEEP),--keep-running)

bench: stack-up ## measured numbers (allocation, ingest throughput, dispatch latency) -> tests/bench/results/
	@$(RUN) $(PY) -m tests.bench.run
