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

test: setup
	$(BIN)/pytest $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports

clean:
	rm -rf $(RUN_DIR) .pytest_cache .mypy_cache .ruff_cache
