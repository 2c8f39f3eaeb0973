# Tuneline: every target installs what it needs first, so a fresh clone needs nothing by hand.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CONFIG ?= examples/support_tickets/run.yaml
PYTEST_ARGS ?=

.PHONY: infra-check install run test test-fast lint up down status pool deploy deployments automations worker browser bench bench-prepare bench-tune bench-evaluate clean

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

# The fault scenarios (a stack of their own, outages, killed runs) spend most of their ~20 minutes
# waiting -- for a 30 s outage, for a dead run's 60 s lease -- so they run in a second pytest
# process beside the rest of the suite, and their report is printed after it. Both must pass.
FAULTS := faults and service
FAULTS_LOG := test-artifacts/faults.log

test: install browser
	@mkdir -p $(dir $(FAULTS_LOG))
	@$(BIN)/python -m pytest -m "$(FAULTS)" -p no:cacheprovider $(PYTEST_ARGS) > $(FAULTS_LOG) 2>&1 & faults=$$!; \
	$(BIN)/python -m pytest -m "not ($(FAULTS))" $(PYTEST_ARGS); rest=$$?; \
	wait $$faults; failed_faults=$$?; \
	echo "=== the fault suite, run beside the tests above ($(FAULTS_LOG)) ==="; cat $(FAULTS_LOG); \
	[ $$rest -eq 0 ] && { [ $$failed_faults -eq 0 ] || [ $$failed_faults -eq 5 ]; }  # 5: PYTEST_ARGS selected no fault test

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

# --- Deployments: the local stack's Prefect server, a process work pool, a worker ------------
# Prefect's own CLI, pointed at the server the settings name (TUNELINE_PREFECT_API_URL, .env).
# Recursive (=): evaluated in recipes, after `install` has created the venv.
PREFECT_API_URL_FROM_SETTINGS = $(shell $(BIN)/python -c "from tuneline.settings import get_settings; print(get_settings().prefect_api_url)")
PREFECT = PREFECT_API_URL=$(PREFECT_API_URL_FROM_SETTINGS) PREFECT_SERVER_ANALYTICS_ENABLED=false DO_NOT_TRACK=1 $(BIN)/prefect
POOL ?= tuneline-local

pool: up
	$(PREFECT) work-pool inspect $(POOL) >/dev/null 2>&1 || $(PREFECT) work-pool create $(POOL) --type process

# prefect.yaml is generated from deployments/*.yaml; then every deployment, then the automations.
deploy: pool deployments
	$(PREFECT) --no-prompt deploy --all
	$(BIN)/tuneline automations apply

deployments: install
	$(BIN)/tuneline deployments render

automations: install
	$(BIN)/tuneline automations apply

# Runs in the foreground; each flow run is a subprocess starting in this directory.
worker: pool
	$(PREFECT) worker start --pool $(POOL) --type process

# Headless Chromium for the browser test (tests/e2e/test_ui.py): Debian's package, once.
browser:
	@test -x /usr/bin/chromium || { \
		if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium; \
		else sudo apt-get update -qq && sudo apt-get install -y -qq --no-install-recommends chromium; fi; }

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
