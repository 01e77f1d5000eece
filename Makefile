# `make test` and `make demo` each create .venv and install what they need.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
DEMO_WORKSPACE := demo-workspace

.PHONY: test lint typecheck layers unit demo bench bench-cold-start bench-peers clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/ruff format --check src tests benchmarks examples

typecheck: $(STAMP)
	$(BIN)/mypy --strict src

layers: $(STAMP)
	$(BIN)/lint-imports

unit: $(STAMP)
	$(BIN)/pytest

test: lint typecheck layers unit

demo: $(STAMP)
	rm -rf $(DEMO_WORKSPACE)
	$(BIN)/python examples/demo.py $(DEMO_WORKSPACE)

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_log.py
	$(BIN)/python benchmarks/bench_run.py
	$(BIN)/python benchmarks/bench_per_task.py
	$(BIN)/python benchmarks/bench_recovery.py
	$(BIN)/python benchmarks/bench_queue.py
	$(BIN)/python benchmarks/bench_console.py
	$(BIN)/python benchmarks/bench_gate.py
	$(BIN)/python benchmarks/bench_gate_http.py
	$(BIN)/python benchmarks/bench_postgres.py

# Prefect 3 and DBOS in their own venv, beside stoic's: not part of `make test`.
PEERS_VENV := .venv-peers
PEERS_STAMP := $(PEERS_VENV)/.installed-stamp

$(PEERS_STAMP):
	$(PYTHON) -m venv $(PEERS_VENV)
	$(PEERS_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(PEERS_VENV)/bin/python -m pip install --quiet 'prefect>=3,<4' 'dbos>=1,<4'
	touch $(PEERS_STAMP)

bench-cold-start: $(STAMP)
	$(BIN)/python benchmarks/bench_cold_start.py

bench-peers: $(STAMP) $(PEERS_STAMP)
	$(BIN)/python benchmarks/bench_peers.py --peers-python $(PEERS_VENV)/bin/python

clean:
	rm -rf $(VENV) $(PEERS_VENV) $(DEMO_WORKSPACE) .pytest_cache .mypy_cache .ruff_cache
