# The two commands: `make demo` and `make test`. Both build .venv themselves.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
PIP     = pip install --quiet --disable-pip-version-check
# Test processes at once (pytest-xdist): each has a database of its own, and most tests wait on
# Postgres and worker processes rather than on the CPU. Two, not three: the tests share one
# server of 100 connections, and three at once reached 86-100 of them (worker processes keep
# pools). JOBS=0 runs them in this process.
JOBS   ?= 2
# The versions the whole suite runs on (`make lock` makes the file again from pyproject.toml).
LOCK    = requirements/dev.lock
STAMP   = $(VENV)/.installed-$(shell cat pyproject.toml $(LOCK) | cksum | cut -d' ' -f1)
# The lowest versions pyproject.toml allows, for the unit and integration tests.
LOWEST  = requirements/lowest.txt
LVENV   = .venv-lowest
LSTAMP  = $(LVENV)/.installed-$(shell cat pyproject.toml $(LOWEST) | cksum | cut -d' ' -f1)

.PHONY: install demo test test-fast test-lowest lock lint typecheck pytest bench bench-quick bench-production bench-production-quick bench-soak bench-instructions clean

$(STAMP): pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/$(PIP) -r $(LOCK)
	$(BIN)/$(PIP) --no-deps -e ".[dev,web,embedded]"
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

$(LSTAMP): pyproject.toml $(LOWEST)
	rm -rf $(LVENV)
	$(PYTHON) -m venv $(LVENV)
	$(LVENV)/bin/$(PIP) -r $(LOWEST)
	$(LVENV)/bin/$(PIP) --no-deps -e .
	touch $(LSTAMP)

lock:
	rm -rf .venv-lock && $(PYTHON) -m venv .venv-lock && .venv-lock/bin/$(PIP) pip-tools
	.venv-lock/bin/pip-compile --quiet --strip-extras --extra dev --extra web --extra embedded \
	  --no-emit-index-url --no-emit-find-links --no-emit-trusted-host -o $(LOCK) pyproject.toml
	rm -rf .venv-lock

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/pgjobs demo

lint: $(STAMP)
	$(BIN)/ruff check pgjobs tests bench alembic tools docs
	$(BIN)/ruff format --check pgjobs tests bench alembic tools docs
	$(BIN)/lint-imports
	$(BIN)/python tools/import_cycles.py
	$(BIN)/python tools/code_size.py
	$(BIN)/python tools/db_path.py

typecheck: $(STAMP)
	$(BIN)/mypy

# The documentation site, from mkdocs.yml and docs/, into site/ (ignored by git).
.PHONY: docs
docs: $(STAMP)
	$(BIN)/mkdocs build --strict --site-dir site

# The dashboard test drives a real headless Chromium: Debian's package.
CHROMIUM ?= /usr/bin/chromium
SUDO     := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
$(CHROMIUM):
	@command -v apt-get >/dev/null || { echo "tests/system/test_dashboard.py needs Chromium at $(CHROMIUM) (CHROMIUM=path to use another)"; exit 1; }
	$(SUDO) apt-get install -y --no-install-recommends chromium || \
	  { $(SUDO) apt-get update && $(SUDO) apt-get install -y --no-install-recommends chromium; }

# tests/system/test_pgbouncer.py runs pgjobs behind a real transaction-pooling PgBouncer: Debian's.
PGBOUNCER ?= /usr/sbin/pgbouncer
$(PGBOUNCER):
	@command -v apt-get >/dev/null || { echo "tests/system/test_pgbouncer.py needs PgBouncer at $(PGBOUNCER) (PGBOUNCER=path to use another)"; exit 1; }
	$(SUDO) apt-get install -y --no-install-recommends pgbouncer || \
	  { $(SUDO) apt-get update && $(SUDO) apt-get install -y --no-install-recommends pgbouncer; }

pytest: $(STAMP) $(CHROMIUM) $(PGBOUNCER)
	PGJOBS_CHROMIUM=$(CHROMIUM) PGJOBS_PGBOUNCER=$(PGBOUNCER) $(BIN)/pytest -n $(JOBS) $(PYTEST_ARGS)

test: lint typecheck docs pytest test-lowest

# The unit and integration tests on the lowest versions pyproject.toml allows.
test-lowest: $(LSTAMP)
	$(LVENV)/bin/pytest -n $(JOBS) -m "not system" -p no:cacheprovider -q \
	  tests/unit tests/integration $(PYTEST_ARGS)

# Unit and integration tests alone (tests/unit, tests/integration), in process: no worker
# processes, private clusters, network cuts or browser (tests/system and the tests marked
# `system`), and no `pgjobs` command run as a process (marked `processes`).
test-fast: $(STAMP)
	$(BIN)/pytest -n $(JOBS) -m "not system and not processes" tests/unit tests/integration $(PYTEST_ARGS)

# Each peer queue is installed into bench/venvs/<name> on first use.
bench: $(STAMP)
	$(BIN)/python bench/bench.py

bench-quick: $(STAMP)
	$(BIN)/python bench/bench.py --quick

# A large backlog and a held xmin horizon (300 and 1,500 jobs/s, one worker process and four,
# the snapshot held 10 minutes), for the Postgres queues, each run on a private cluster (initdb
# in a temporary folder) that the harness starts and removes: about five hours; --quick, 40 min.
bench-production: $(STAMP)
	$(BIN)/python bench/bench.py --scenarios backlog,horizon

bench-production-quick: $(STAMP)
	$(BIN)/python bench/bench.py --scenarios backlog,horizon --quick

# Ten million jobs through four worker processes on a private cluster, each run counted.
bench-soak: $(STAMP)
	$(BIN)/python bench/soak.py

# Client instructions per enqueued job, under valgrind: steadier than time on a shared machine.
bench-instructions: $(STAMP)
	$(BIN)/python bench/instructions.py --out bench/results
	$(BIN)/python -m bench.worker_instructions

clean:
	rm -rf $(VENV) $(LVENV) .pytest_cache .mypy_cache .ruff_cache
