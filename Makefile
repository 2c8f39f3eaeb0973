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

# The fault scenarios (outages, killed runs, the secret scan) spend most of their ~20 minutes
# waiting -- for a 30 s outage, for a dead run's 60 s lease -- so they run beside the rest of the
# suite in two more pytest processes, each with a fault stack of its own: the chain of kills with
# the S3 outages in prepare/evaluate/promote and the secret scan of what they all leave behind, and
# the other scenarios (about even in length). All three must pass, and each
# must have run tests: pytest's exit 5 (nothing collected) fails the target, so CI never passes on
# an empty group. Only with PYTEST_ARGS (a developer's selection, which may leave a group empty)
# does 5 count as a pass. The fault reports are printed after the rest.
FAULTS := faults and service
FAULT_CHAIN := each_stage or during_a_stage or secret
FAULT_LOGS := test-artifacts/faults-chain.log test-artifacts/faults-other.log

test: install browser
	@mkdir -p test-artifacts
	@$(BIN)/python -m pytest -m "$(FAULTS)" -k "$(FAULT_CHAIN)" -p no:cacheprovider $(PYTEST_ARGS) \
		> test-artifacts/faults-chain.log 2>&1 & chain=$$!; \
	$(BIN)/python -m pytest -m "$(FAULTS)" -k "not ($(FAULT_CHAIN))" -p no:cacheprovider $(PYTEST_ARGS) \
		> test-artifacts/faults-other.log 2>&1 & other=$$!; \
	$(BIN)/python -m pytest -m "not ($(FAULTS))" $(PYTEST_ARGS); rest=$$?; \
	wait $$chain; chain=$$?; wait $$other; other=$$?; \
	for log in $(FAULT_LOGS); do echo "=== $$log (run beside the tests above) ==="; cat $$log; done; \
	passed() { [ $$1 -eq 0 ] || { [ -n "$(strip $(PYTEST_ARGS))" ] && [ $$1 -eq 5 ]; }; }; \
	for group in "rest $$rest" "faults-chain $$chain" "faults-other $$other"; do \
		set -- $$group; passed $$2 || echo "make test: the $$1 group failed (pytest exit $$2; 5 = no test collected)"; \
	done; \
	passed $$rest && passed $$chain && passed $$other

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
# Prefect's own CLI, pointed at the server the settings name (TUNELINE_PREFECT_API_URL, .env) with
# the stack's auth string: `tuneline stack env` exports both, so the secret never appears in the
# recipe lines make echoes.
PREFECT = eval "$$($(BIN)/tuneline stack env)" && PREFECT_SERVER_ANALYTICS_ENABLED=false DO_NOT_TRACK=1 $(BIN)/prefect
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
