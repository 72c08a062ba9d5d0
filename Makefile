# raybench developer commands. `make run` installs and runs the quick start; `make test` installs and
# runs the tests. TORCH selects the torch build: the default is the CPU build; on a GPU machine use
# e.g. `make install TORCH="torch --index-url <wheel index for your CUDA>"`.
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: install run test lint format bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml analysis/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -e ./analysis -e ".[dev]"
	touch $@

run: install
	$(BIN)/raybench run suites/quickstart.yaml

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check raybench analysis tests benchmarks
	$(BIN)/ruff format --check raybench analysis tests benchmarks

format: install
	$(BIN)/ruff format raybench analysis tests benchmarks
	$(BIN)/ruff check --fix raybench analysis tests benchmarks

bench: install
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache results
