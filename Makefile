# featurebus — run `make help` for the targets.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The Flink engine's own venv: apache-flink 2.2 pins apache-beam 2.61, which pins numpy<2.2 and
# pyarrow<17; kept apart so the rest of featurebus keeps current numpy/pyarrow (and mypy their
# types). `featurebus worker --engine flink` runs from here (FEATUREBUS_FLINK_PYTHON points at it).
FLINK_VENV := .venv-flink
FLINK_STAMP := $(FLINK_VENV)/.installed
# Re-install when the packaging or the set of modules changes (strict editable installs link files).
SOURCES := sdk platform streams schemas serving tests bench examples tools
MODULES := $(shell find sdk platform streams schemas serving -name '*.py' 2>/dev/null | sort | md5sum | cut -c1-12)

.DEFAULT_GOAL := help
.PHONY: help bootstrap chromium demo test test-fast lint fmt bench kafka-jars clean

help: ## Show this help
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(STAMP).$(MODULES): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]' --config-settings editable_mode=strict
	@rm -f $(STAMP).*; touch $@

$(FLINK_STAMP).$(MODULES): pyproject.toml $(STAMP).$(MODULES)
	@test -x $(FLINK_VENV)/bin/python || $(PYTHON) -m venv $(FLINK_VENV)
	$(FLINK_VENV)/bin/pip install -q --upgrade pip
	$(FLINK_VENV)/bin/pip install -q -e '.[flink]' --config-settings editable_mode=strict
	@rm -f $(FLINK_STAMP).*; touch $@

bootstrap: $(STAMP).$(MODULES) $(FLINK_STAMP).$(MODULES) chromium ## Create the venvs (featurebus; featurebus[flink]), resolve the Kafka and Flink jars, install Chromium
	@$(BIN)/python -m featurebus kafka fetch
	@$(FLINK_VENV)/bin/python -m featurebus flink fetch

demo: bootstrap ## Run the platform on its defaults: fraud example, live vectors, a training set
	$(BIN)/python -m featurebus demo

test: bootstrap ## Run the whole test suite (starts a local Kafka for the Kafka tests)
	$(BIN)/python -m pytest

test-fast: bootstrap ## Unit and contract tests, without the Kafka-marked ones (starts no broker)
	$(BIN)/python -m pytest tests/unit tests/contract -m "not kafka"

lint: bootstrap ## ruff (lint and format check), mypy, and the one-way layers (tools/check_layers.py)
	$(BIN)/ruff check $(SOURCES)
	$(BIN)/ruff format --check $(SOURCES)
	$(BIN)/mypy -p featurebus
	$(BIN)/python tools/check_layers.py

fmt: bootstrap ## Format the code (ruff format) and sort imports
	$(BIN)/ruff format $(SOURCES)
	$(BIN)/ruff check --select I --fix $(SOURCES)

bench: bootstrap ## Benchmarks: one JSON line per figure, featurebus next to its peer
	$(BIN)/python -m bench

# The web UI's browser tests (tests/browser) drive Debian's chromium through Playwright's Python
# API; no browser download at test time. As root, apt-get installs it; otherwise say so loudly.
chromium:
	@if [ ! -x /usr/bin/chromium ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get install -y -q chromium >/dev/null 2>&1 || (apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null)) \
	      || echo "WARNING: apt-get could not install the 'chromium' package: tests/browser will be skipped"; \
	  else \
	    echo "WARNING: the Debian package 'chromium' is missing and this is not root: tests/browser will be skipped (sudo apt-get install chromium)"; \
	  fi; \
	fi

kafka-jars: bootstrap ## Only resolve the Kafka jars (Maven, cached)

clean: ## Remove the venv, build links and local state
	rm -rf $(VENV) $(FLINK_VENV) build .featurebus *.egg-info
