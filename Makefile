# The two commands a newcomer needs: `make demo` and `make test`. Everything else is a convenience.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test test-fast lint format bench ui clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "leadflow needs Python 3.11 or newer (found " + sys.version.split()[0] + ")")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/leadflow demo

# Four pytest-xdist workers on two cores: one pytest process alone keeps a core busy only about half the time (it
# waits on its Prefect test API, subprocesses, servers and PostgreSQL), so four overlap those waits. A worker that runs
# out of tests takes over half of another's (worksteal). Each worker has its own Prefect home, Prefect test API,
# PostgreSQL database and SQLite template; servers started by tests take free ports.
XDIST ?= -n 4 --dist worksteal

test: $(STAMP)
	$(BIN)/ruff check .
	@# The report page is opened in real headless Chromium (Debian's package) by tests/e2e/test_report_browser.py.
	command -v chromium >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium; }
	@# The mailbox tests read a real IMAP server: Debian's Dovecot, run by the tests from a config of their own.
	test -x /usr/sbin/dovecot || { $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq dovecot-imapd; }
	$(BIN)/python -m pytest $(XDIST) $(PYTEST_ARGS)

# The inner loop: everything but the `slow` end-to-end tests (real server and worker, Chromium, Dask, kill-and-resume).
test-fast: $(STAMP)
	$(BIN)/ruff check .
	test -x /usr/sbin/dovecot || { $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq dovecot-imapd; }
	$(BIN)/python -m pytest $(XDIST) -m "not slow" $(PYTEST_ARGS)

# The code is laid out by hand within ruff's lint rules (120 columns); `ruff format` is not used here.
lint: $(STAMP)
	$(BIN)/ruff check .

format: $(STAMP)
	$(BIN)/ruff check --fix .

bench: $(STAMP)
	$(BIN)/python bench/intake_bench.py --sizes 10000 100000 --repeat 3

# The UI reaches the API at PREFECT_UI_API_URL, which must name the port it is served on: `make ui UI_PORT=4300`.
UI_HOST ?= 127.0.0.1
UI_PORT ?= 4200

ui: $(STAMP)
	PREFECT_UI_API_URL=http://$(UI_HOST):$(UI_PORT)/api $(BIN)/prefect server start --host $(UI_HOST) --port $(UI_PORT)

clean:
	rm -rf $(VENV) leadflow.db leadflow.db-* leadflow-output .pytest_cache .ruff_cache
