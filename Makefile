# news-monitor: the two commands a newcomer needs are `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: run test lint check clean

# The venv is rebuilt whenever pyproject.toml changes.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

# Serves seeds/ on 127.0.0.1 and runs the daemon on config.example.yaml with a fresh
# demo database, printing every alert. Ctrl-C stops it.
run: $(STAMP)
	$(BIN)/news-monitor demo --config config.example.yaml --fresh

test: $(STAMP)
	$(BIN)/ruff check monitor tests benchmarks
	$(BIN)/mypy
	$(BIN)/pytest -q

check: $(STAMP)
	$(BIN)/news-monitor check --config config.example.yaml

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache
