# The two commands of the README's Quick start: `make demo` and `make test`.
# Both create or refresh the virtualenv themselves.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

# The versions `make test` runs are pinned in constraints.txt (refreshed on purpose: make lock);
# make test-latest runs the newest releases the bounds in pyproject.toml admit, in .venv-latest.
CONSTRAINTS := constraints.txt
LOWEST      := .venv-lowest
LATEST      := .venv-latest

.PHONY: demo test lint typecheck pytest test-cli-lowest test-latest lock docs system-deps bench clean

$(STAMP): pyproject.toml $(CONSTRAINTS)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || { \
	  echo "python3 -m venv failed: on Debian/Ubuntu, apt-get install python3-venv"; exit 1; }
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c $(CONSTRAINTS) -e '.[dev]'
	@touch $(STAMP)

## demo: the daemon on its embedded default (SQLite, the Canvas simulator, feeds on localhost)
demo: $(STAMP)
	$(BIN)/calbridge demo

## test: install everything the tests need, lint, type-check and run the whole suite
test: $(STAMP) system-deps lint typecheck pytest test-cli-lowest

system-deps:
	@./scripts/system-deps.sh

lint: $(STAMP)
	$(BIN)/ruff check bridge tests bench
	$(BIN)/ruff format --check bridge tests bench
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

# pytest exits 5 when it collected no test: that fails the build like any other non-zero code.
# The tests spend most of their time waiting on real servers, so they run in TEST_WORKERS
# processes (pytest-xdist); a file's tests stay on one worker, sharing its module fixtures.
TEST_WORKERS ?= 3
pytest: $(STAMP)
	$(BIN)/pytest -q -n $(TEST_WORKERS) --dist loadfile

## test-cli-lowest: the CLI's conventions with the lowest typer and click the bounds admit
$(LOWEST)/.installed-stamp: pyproject.toml $(CONSTRAINTS) constraints-lowest.txt
	@test -x $(LOWEST)/bin/python || $(PYTHON) -m venv $(LOWEST)
	grep -v -E '^(typer|click)==' $(CONSTRAINTS) > $(LOWEST)/constraints-rest.txt
	$(LOWEST)/bin/python -m pip install -q -c $(LOWEST)/constraints-rest.txt \
	    -c constraints-lowest.txt -e .
	@touch $@

test-cli-lowest: $(STAMP) $(LOWEST)/.installed-stamp
	CALBRIDGE_CLI_PYTHON=$(LOWEST)/bin/python $(BIN)/pytest -q -p no:cacheprovider \
	    tests/cli/test_conventions.py

## test-latest: lint, types and the whole suite against the newest releases (no constraints)
test-latest: system-deps
	@test -x $(LATEST)/bin/python || $(PYTHON) -m venv $(LATEST)
	$(LATEST)/bin/python -m pip install -q --upgrade pip
	$(LATEST)/bin/python -m pip install -q --upgrade --upgrade-strategy eager -e '.[dev]'
	$(LATEST)/bin/python -m pip freeze --exclude-editable > $(LATEST)/versions.txt
	@diff $(CONSTRAINTS) $(LATEST)/versions.txt | grep '^[<>]' | grep -v '^< #' || true
	$(LATEST)/bin/ruff check bridge tests bench
	$(LATEST)/bin/mypy
	$(LATEST)/bin/lint-imports
	$(LATEST)/bin/pytest -q

## lock: re-pin constraints.txt to the newest releases the bounds admit (then run make test)
lock:
	rm -rf .venv-lock
	$(PYTHON) -m venv .venv-lock
	.venv-lock/bin/python -m pip install -q --upgrade pip
	.venv-lock/bin/python -m pip install -q -e '.[dev]'
	{ sed -n '/^#/p' $(CONSTRAINTS); .venv-lock/bin/python -m pip freeze --exclude-editable; } \
	    > $(CONSTRAINTS).new
	mv $(CONSTRAINTS).new $(CONSTRAINTS)
	rm -rf .venv-lock

## docs: regenerate man/calbridge.1 and the README's command reference from the CLI, and
## config.example.toml from the configuration schema
docs: $(STAMP)
	$(BIN)/python scripts/gen-cli-docs.py

bench: $(STAMP) system-deps
	$(BIN)/python bench/canvas_poll.py

clean:
	rm -rf $(VENV) $(LOWEST) $(LATEST) .venv-lock .mypy_cache .ruff_cache .pytest_cache
