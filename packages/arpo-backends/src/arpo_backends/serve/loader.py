"""Loading a served model: name or folder → tokenizer + model (transformers 5, CPU) → ``Engine``.

Names go through ``arpo_backends.models.resolve_model`` (a local folder, ``smollm2-135m-instruct`` or ``tiny``);
loading is offline (``local_files_only``). ``max_model_len`` defaults to the config's
``max_position_embeddings``, as vLLM derives it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from arpo_backends.models import resolve_model

if TYPE_CHECKING:
    from arpo_backends.serve.engine import Engine

__all__ = ["DTYPES", "load_engine"]

DTYPES = ("float32", "bfloat16", "float16")


def load_engine(
    name_or_path: str,
    *,
    dtype: str = "float32",
    max_model_len: int | None = None,
    max_batch: int = 32,
    prefill_tokens: int = 0,
    prefix_cache_tokens: int = 0,
) -> tuple[Engine, Path]:
    """The engine for a model, and the folder it was loaded from."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype {dtype!r} is not one of {', '.join(DTYPES)}.")
    if max_batch < 1:
        raise ValueError(f"max_batch={max_batch} must be at least 1.")
    if prefill_tokens < 0:
        raise ValueError(f"prefill_tokens={prefill_tokens} must be 0 (one forward per prompt) or more.")
    if prefix_cache_tokens < 0:
        raise ValueError(f"prefix_cache_tokens={prefix_cache_tokens} must be 0 (no prefix cache) or more.")
    folder = resolve_model(name_or_path)  # before importing torch: a bad name fails fast

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from arpo_backends.serve.engine import Engine

    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=getattr(torch, dtype), local_files_only=True)
    context = int(getattr(model.config, "max_position_embeddings", 0) or 2048)
    if max_model_len is None:
        max_model_len = context
    elif not 1 < max_model_len <= context:
        raise ValueError(f"max_model_len={max_model_len} must be between 2 and the model's context ({context}).")
    engine = Engine(
        model,
        tokenizer,
        max_model_len=max_model_len,
        max_batch=max_batch,
        prefill_tokens=prefill_tokens,
        prefix_cache_tokens=prefix_cache_tokens,
    )
    return engine, folder
