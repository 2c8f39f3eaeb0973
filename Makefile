# Tuneline: every target installs what it needs first, so a fresh clone needs nothing by hand.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CONFIG ?= examples/support_tickets/run.yaml
PYTEST_ARGS ?=

.PHONY: infra-check install run test test-fast lint up down status worker deploy bench bench-prepare bench-tune bench-evaluate clean

install: $(STAMP)

# Exact versions of everything come from requirements.lock; the project itself installs without deps.
$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

run: install
	$(BIN)/tuneline stack up
	$(BIN)/python -m examples.support_tickets.generate
	$(BIN)/python -m examples.support_tickets.base_model
	$(BIN)/tuneline run $(CONFIG) --approval auto

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: install
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check tuneline flows tasks tests bench examples
	$(BIN)/lint-imports

up: install
	$(BIN)/tuneline stack up

down: install
	$(BIN)/tuneline stack down

status: install
	$(BIN)/tuneline stack status

bench: bench-prepare bench-tune bench-evaluate

bench-prepare: install
	$(BIN)/python bench/prepare.py

bench-tune: install
	$(BIN)/python bench/tune.py

bench-evaluate: install
	$(BIN)/python bench/evaluate.py

clean:
	-$(BIN)/tuneline stack down
	rm -rf .tuneline

# Validates the infra files with the real tools where this machine can have them (Debian's
# docker-compose 1.29 runs `config` without an engine); tests/infra falls back to parsing otherwise.
infra-check: install
	command -v docker-compose >/dev/null || (apt-get update -qq && apt-get install -y -qq --no-install-recommends docker-compose)
	docker-compose -f infra/docker-compose.yml --env-file infra/.env.example config -q
	$(BIN)/python -m pytest tests/infra -q
