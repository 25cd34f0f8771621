# Two commands on a fresh machine:
#   make run    install the gateway in .venv and run it on the embedded SQLite default
#   make test   install what the tests need (system packages too) and run the whole suite
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin

.PHONY: run install install-test test bench soak lint

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install -q -e .

install-test: $(BIN)/python
	bash scripts/install-test-deps.sh
	$(BIN)/pip install -q -e '.[test]' -e ./examples/scanned-post

run: install
	$(BIN)/complaint-gateway --config config.yaml run

test: install-test
	$(BIN)/python -m pytest -q

bench: install-test
	$(BIN)/pip install -q -e '.[bench]'
	command -v wrk >/dev/null 2>&1 || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null)
	$(BIN)/python bench/run.py

soak: install-test
	$(BIN)/python scripts/soak.py --backend sqlite
	$(BIN)/python scripts/soak.py --backend redis

lint: install-test
	$(BIN)/pip install -q ruff mypy
	$(BIN)/ruff check gateway normalizer channels tests bench scripts examples
	$(BIN)/mypy gateway normalizer channels
