# The two commands: `make demo` and `make test`. Both build .venv themselves.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: install demo test test-fast lint typecheck pytest bench bench-quick bench-production bench-production-quick bench-instructions clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e ".[dev]"
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/pgjobs demo

lint: $(STAMP)
	$(BIN)/ruff check pgjobs tests bench alembic
	$(BIN)/ruff format --check pgjobs tests bench alembic

typecheck: $(STAMP)
	$(BIN)/mypy

# The dashboard test drives a real headless Chromium: Debian's package.
CHROMIUM ?= /usr/bin/chromium
SUDO     := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
$(CHROMIUM):
	@command -v apt-get >/dev/null || { echo "tests/test_dashboard.py needs Chromium at $(CHROMIUM) (CHROMIUM=path to use another)"; exit 1; }
	$(SUDO) apt-get install -y --no-install-recommends chromium || \
	  { $(SUDO) apt-get update && $(SUDO) apt-get install -y --no-install-recommends chromium; }

# tests/test_pgbouncer.py runs pgjobs behind a real transaction-pooling PgBouncer: Debian's.
PGBOUNCER ?= /usr/sbin/pgbouncer
$(PGBOUNCER):
	@command -v apt-get >/dev/null || { echo "tests/test_pgbouncer.py needs PgBouncer at $(PGBOUNCER) (PGBOUNCER=path to use another)"; exit 1; }
	$(SUDO) apt-get install -y --no-install-recommends pgbouncer || \
	  { $(SUDO) apt-get update && $(SUDO) apt-get install -y --no-install-recommends pgbouncer; }

pytest: $(STAMP) $(CHROMIUM) $(PGBOUNCER)
	PGJOBS_CHROMIUM=$(CHROMIUM) PGJOBS_PGBOUNCER=$(PGBOUNCER) $(BIN)/pytest $(PYTEST_ARGS)

test: lint typecheck pytest

# Unit and integration tests alone: no worker processes, private clusters, network cuts or
# browser (tests marked `system`, see tests/conftest.py).
test-fast: $(STAMP)
	$(BIN)/pytest -m "not system" $(PYTEST_ARGS)

# Each peer queue is installed into bench/venvs/<name> on first use.
bench: $(STAMP)
	$(BIN)/python bench/bench.py

bench-quick: $(STAMP)
	$(BIN)/python bench/bench.py --quick

# A large backlog and a held xmin horizon, for the Postgres queues, each run on a private
# cluster (initdb in a temporary folder) that the harness starts and removes.
bench-production: $(STAMP)
	$(BIN)/python bench/bench.py --scenarios backlog,horizon

bench-production-quick: $(STAMP)
	$(BIN)/python bench/bench.py --scenarios backlog,horizon --quick

# Client instructions per enqueued job, under valgrind: steadier than time on a shared machine.
bench-instructions: $(STAMP)
	$(BIN)/python bench/instructions.py --out bench/results

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
