# The front door: `make run` and `make test` (see README.md).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# A local installation for development: nothing outside this checkout is touched.
RUN_DIR ?= $(CURDIR)/.run
export MULTIFLEXI_CONFIG ?= /dev/null
PYTEST_ARGS ?=

.PHONY: setup run test lint bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	.ci/system-packages.sh
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

# Demo data, then multiflexid in the background on $(RUN_DIR) (log: $(RUN_DIR)/multiflexid.log)
# and the TUI in front of it. The daemon started here is stopped when the TUI exits.
run: setup
	@mkdir -p $(RUN_DIR)
	@MULTIFLEXI_DATA_DIR=$(RUN_DIR) MULTIFLEXI_DATABASE_URL= \
	  MULTIFLEXI_SOCKET=$(RUN_DIR)/multiflexid.sock MULTIFLEXI_LOG_TARGET=stderr \
	  sh -c 'set -e; \
	    $(BIN)/multiflexi-cli demo; \
	    $(BIN)/multiflexid >$(RUN_DIR)/multiflexid.log 2>&1 & daemon=$$!; \
	    trap "kill $$daemon 2>/dev/null; wait $$daemon 2>/dev/null || true" EXIT; \
	    trap "exit 130" INT TERM HUP; \
	    tries=0; \
	    until $(BIN)/python -c "import socket, sys; socket.socket(socket.AF_UNIX).connect(sys.argv[1])" \
	          "$$MULTIFLEXI_SOCKET" 2>/dev/null; do \
	      if ! kill -0 $$daemon 2>/dev/null; then \
	        echo "multiflexid did not start:" >&2; cat $(RUN_DIR)/multiflexid.log >&2; exit 1; fi; \
	      tries=$$((tries + 1)); \
	      if [ $$tries -ge 200 ]; then echo "multiflexid: no socket after 20 s" >&2; exit 1; fi; \
	      sleep 0.1; \
	    done; \
	    $(BIN)/multiflexi-tui --socket "$$MULTIFLEXI_SOCKET" --view templates'

# Tests marked root_only install packages, switch users, mount things: only root runs
# them (CI does). For anyone else `make test` leaves them out and says how many. (With
# your own -m in PYTEST_ARGS, add "and not root_only" to it yourself.)
IS_ROOT := $(filter 0,$(shell id -u))
# The suite waits more than it computes (daemons, servers, containers): it runs on
# TEST_WORKERS pytest-xdist workers (3 keep two cores busy); tests that share something
# of the machine stay on one of them (tests/support/groups.py). TEST_WORKERS=0: all in
# this one process.
TEST_WORKERS ?= 3
XDIST := -n $(TEST_WORKERS) --dist loadgroup

test: setup
ifeq ($(IS_ROOT),)
	@n=$$($(BIN)/pytest --collect-only -q $(PYTEST_ARGS) -m root_only 2>/dev/null | grep -c '::'); \
	  echo "not run: $$n root-only tests (need root)"
	$(BIN)/pytest $(XDIST) -m "not root_only" $(PYTEST_ARGS)
else
	$(BIN)/pytest $(XDIST) $(PYTEST_ARGS)
endif

lint: setup
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports

# Every benchmark of bench/ (about 15 minutes) and one table of figures against their targets.
# BENCH_ARGS=--quick for a smoke run; see bench/run_all.py --help.
BENCH_ARGS ?=

bench: setup
	$(BIN)/pip install -q -e '.[bench]' && \
	  $(BIN)/python bench/run_all.py $(BENCH_ARGS)

clean:
	rm -rf $(RUN_DIR) .pytest_cache .mypy_cache .ruff_cache
