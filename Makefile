# The front door: `make run` and `make test` (see README.md).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# A local installation for development: nothing outside this checkout is touched.
RUN_DIR ?= $(CURDIR)/.run
export MULTIFLEXI_CONFIG ?= /dev/null
PYTEST_ARGS ?=

.PHONY: setup run test lint clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	.ci/system-packages.sh
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

run: setup
	@mkdir -p $(RUN_DIR)
	MULTIFLEXI_DATA_DIR=$(RUN_DIR) MULTIFLEXI_DATABASE_URL= \
	  MULTIFLEXI_SOCKET=$(RUN_DIR)/multiflexid.sock \
	  sh -c '$(BIN)/multiflexi-cli demo && $(BIN)/multiflexi-cli runtemplate list && \
	         $(BIN)/multiflexi-cli status'

# Tests marked root_only install packages, switch users, mount things: only root runs
# them (CI does). For anyone else `make test` leaves them out and says how many. (With
# your own -m in PYTEST_ARGS, add "and not root_only" to it yourself.)
IS_ROOT := $(filter 0,$(shell id -u))

test: setup
ifeq ($(IS_ROOT),)
	@n=$$($(BIN)/pytest --collect-only -q $(PYTEST_ARGS) -m root_only 2>/dev/null | grep -c '::'); \
	  echo "not run: $$n root-only tests (need root)"
	$(BIN)/pytest -m "not root_only" $(PYTEST_ARGS)
else
	$(BIN)/pytest $(PYTEST_ARGS)
endif

lint: setup
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports

clean:
	rm -rf $(RUN_DIR) .pytest_cache .mypy_cache .ruff_cache
