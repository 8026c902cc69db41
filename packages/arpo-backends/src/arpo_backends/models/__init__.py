"""Models that load offline: the embedded default (SmolLM2-135M-Instruct) and tiny random models for tests.

``resolve_model(name_or_path)`` turns ``"smollm2-135m-instruct"``, ``"tiny"`` or a local folder into a local
Hugging Face folder; it never downloads. Importing this package does not import torch or transformers.
"""

from arpo_backends.models.resolve import DEFAULT_MODEL, KNOWN_MODELS, ModelNotFoundError, cache_dir, resolve_model

__all__ = ["DEFAULT_MODEL", "KNOWN_MODELS", "ModelNotFoundError", "cache_dir", "resolve_model"]
