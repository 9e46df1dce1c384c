# The two set-up commands: `make demo` and `make test`. Each works on a fresh Debian
# machine with nothing but Python: it creates .venv, installs the project, makes sure
# PostgreSQL and Redis answer (scripts/services.sh), then runs.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_WORKERS ?= 2

.PHONY: install services demo demo-serve test lint docs docs-reference bench-dispatch bench-pool bench-ingest bench-callbacks bench-report compose-check clean

# Installs exactly the versions of requirements-dev.lock (hash-checked), then the project
# itself without resolving anything again: every machine runs the same versions.
$(STAMP): pyproject.toml requirements-dev.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements-dev.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

# Regenerate the lock files after a change to pyproject.toml's dependencies (uv, from PyPI;
# pins that still fit are kept: `--upgrade-package NAME` in UV_ARGS moves one on purpose).
# requirements.lock (the Dockerfile's) is constrained by the dev lock: the same versions.
LOCK_ARGS := --universal --python-version 3.11 --generate-hashes --quiet
.PHONY: lock
lock: install
	$(BIN)/python -m pip install --quiet uv
	$(BIN)/uv pip compile pyproject.toml --extra dev $(LOCK_ARGS) $(UV_ARGS) -o requirements-dev.lock
	$(BIN)/uv pip compile pyproject.toml $(LOCK_ARGS) -c requirements-dev.lock -o requirements.lock

services:
	bash scripts/services.sh

demo: install services
	$(BIN)/dialer db upgrade
	$(BIN)/dialer demo

# The demo, then its campaign page: prints the page's URL and a key to sign in with, and
# keeps the stack up until Ctrl-C (`make demo` itself ends, for CI-like use).
demo-serve: install services
	$(BIN)/dialer db upgrade
	$(BIN)/dialer demo --serve

# The browser test drives Debian's Chromium headless through selenium and chromedriver.
BROWSER_PACKAGES := chromium chromium-driver fonts-liberation
.PHONY: browser
browser:
	test -x /usr/bin/chromium -a -x /usr/bin/chromedriver || { \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get install -y --no-install-recommends $(BROWSER_PACKAGES) || \
	  { apt-get update && apt-get install -y --no-install-recommends $(BROWSER_PACKAGES); }; }

# The distributed tests (tests/distributed) start their own PgBouncer, RabbitMQ node,
# Redis Sentinels and PostgreSQL cluster (initdb, pg_ctl) on free loopback ports.
SERVER_PACKAGES := pgbouncer rabbitmq-server
.PHONY: servers
servers:
	command -v pgbouncer >/dev/null && command -v rabbitmq-server >/dev/null || { \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get install -y --no-install-recommends $(SERVER_PACKAGES) || \
	  { apt-get update && apt-get install -y --no-install-recommends $(SERVER_PACKAGES); }; }

test: install services browser servers
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) -p no:cacheprovider

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

# The documentation site (docs/, mkdocs.yml) on http://127.0.0.1:8001.
docs: install
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve --dev-addr 127.0.0.1:8001

# Regenerate the Reference pages (docs/reference/) from the code: CLI, settings, OpenAPI,
# webhook events, error codes, report fields, state machines. tests/docs checks they are current.
docs-reference: install
	$(BIN)/python -m dialer.docs_reference

# The compose file, with and without its profiles (RabbitMQ; a Redis replica and Sentinels).
compose-check:
	command -v docker-compose >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends docker-compose
	docker-compose -f docker-compose.yml config -q
	docker-compose -f docker-compose.yml --profile rabbitmq --profile sentinel config -q

bench-dispatch: install services
	$(BIN)/python -m bench.dispatch

bench-pool: install services
	$(BIN)/python -m bench.pool

bench-ingest: install services
	$(BIN)/python -m bench.ingest

bench-callbacks: install services
	$(BIN)/python -m bench.callbacks

bench-report: install services
	$(BIN)/python -m bench.report

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
