# Shipyard — the two commands of the README are `make up` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
TORCH_VERSION ?= 2.13.0
HOME_DIR ?= $(or $(SHIPYARD_HOME),$(HOME)/.shipyard)

.PHONY: install up test test-fast check bench lock clean

# Create .venv and install Shipyard (editable) with the pinned versions of constraints.txt.
# PyTorch (CPU, the extra `dnn`, for the DNN/AUTOENCODER tests) comes first, from pip, which
# takes the CPU wheel (uv would download a CUDA build); skipped when torch already imports.
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv
	$(BIN)/python -c "import torch" 2>/dev/null || \
		$(BIN)/python -m pip install --quiet --disable-pip-version-check torch==$(TORCH_VERSION)
	$(BIN)/uv pip install --quiet --python $(BIN)/python -c constraints.txt -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

## up: install, then start the server and console on 127.0.0.1:8765 with the demo workspace
up: install
	$(BIN)/shipyard up --home "$(HOME_DIR)" $(ARGS)

## test: the whole suite, as CI runs it
test: install
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

## test-fast: skip tests marked slow
test-fast: install
	$(BIN)/python -m pytest -q -m "not slow" $(PYTEST_ARGS)

## check: lint, format, types and the import rules of DESIGN.md
check: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports

## bench: the benchmarks, side by side with their peers; prints ratios
bench: install
	$(BIN)/python benchmarks/run.py $(ARGS)

## lock: re-resolve constraints.txt from pyproject.toml
lock:
	$(BIN)/uv pip compile --quiet --python-version 3.11 --extra dev --extra postgres \
		pyproject.toml -o constraints.txt

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
