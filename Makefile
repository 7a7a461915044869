# The two commands of the README's Quick start: `make demo` and `make test`.
# Both create or refresh the virtualenv themselves.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: demo test lint typecheck pytest system-deps bench clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $(STAMP)

## demo: the daemon on its embedded default (SQLite, the Canvas simulator, feeds on localhost)
demo: $(STAMP)
	$(BIN)/calbridge demo

## test: install everything the tests need, lint, type-check and run the whole suite
test: $(STAMP) system-deps lint typecheck pytest

system-deps:
	@./scripts/system-deps.sh

lint: $(STAMP)
	$(BIN)/ruff check bridge tests bench
	$(BIN)/ruff format --check bridge tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

# pytest exits 5 when it collected no test: that fails the build like any other non-zero code.
pytest: $(STAMP)
	$(BIN)/pytest -q

bench: $(STAMP) system-deps
	$(BIN)/python bench/canvas_poll.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
