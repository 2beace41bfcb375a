# Two commands matter on a fresh machine: `make demo` (the whole loop) and `make test`.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: install system-deps demo test lint stack-up stack-down repro bench clean

install: $(BIN)/mlops system-deps ## create .venv from uv.lock (and Debian's haproxy when possible)

$(BIN)/mlops: pyproject.toml uv.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	test -x $(BIN)/uv || $(BIN)/pip install --quiet "uv>=0.5"
	$(BIN)/uv sync --frozen --quiet
	touch $@

system-deps: ## haproxy for Ray Serve's fast ingress; skipped with a warning when apt is not usable
	@command -v haproxy >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq haproxy) >/dev/null \
	      || echo "warning: could not install haproxy; Ray Serve uses its Python proxy (slower)"; \
	  else echo "warning: haproxy not installed (sudo apt-get install haproxy); Ray Serve uses its Python proxy (slower)"; fi; }

demo: install ## the whole loop on embedded defaults
	$(BIN)/mlops demo

test: install ## the whole test suite (starts its own MLflow server and Ray cluster)
	$(BIN)/pytest

lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

stack-up: install
	$(BIN)/mlops stack up

stack-down:
	$(BIN)/mlops stack down

repro: install
	$(BIN)/mlops data init
	$(BIN)/dvc repro

clean: stack-down
	rm -rf .mlops data/*/prepared models metrics
