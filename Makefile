# Two commands are all the set-up there is: `make quickstart` and `make test`.
# Both create .venv on first use (and again whenever pyproject.toml changes).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test test-fast test-portable quickstart lint clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first, pinned: pip then finds the local CPU wheel instead of a multi-GB CUDA build.
	$(BIN)/pip install -q "torch==2.13.0"
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest

# For iteration: everything but the end-to-end runs that spawn processes (torchrun, S3, sweep workers).
test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow"

# The suite on PyTorch's plain, non-vectorised CPU kernels: floats round differently than with AVX2/AVX-512,
# so a test that compares against another machine's numbers bit for bit fails here (tolerances, not equality).
test-portable: $(STAMP)
	ATEN_CPU_CAPABILITY=default $(BIN)/python -m pytest

quickstart: $(STAMP)
	$(BIN)/bl2 quickstart

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache
