"""Corpus files: what loads, and one clear sentence naming file and line for each kind of bad line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from arpo_tools.search.corpus import DEFAULT_CORPUS, CorpusError, load_corpus

GOOD = '{"id": "a", "title": "Alpha", "text": "First passage."}\n'


def test_loads_passages_skipping_blank_lines_and_extra_keys(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    path.write_text(
        GOOD
        + "\n   \n"
        + '{"id": 7, "title": " Seven ", "text": " Text ", "url": "x"}\n'
        + '{"id": "fr", "contents": "Flash Title\\nFlashRAG layout body"}\n',
        encoding="utf-8",
    )
    passages = load_corpus(path)
    assert [(p.id, p.title, p.text) for p in passages] == [
        ("a", "Alpha", "First passage."),
        ("7", "Seven", "Text"),
        ("fr", "Flash Title", "FlashRAG layout body"),
    ]


def test_the_embedded_corpus_loads() -> None:
    passages = load_corpus(DEFAULT_CORPUS)
    assert 300 <= len(passages) <= 2000
    assert DEFAULT_CORPUS.stat().st_size < 1_000_000


BAD_LINES = [
    ("{not json", r"line 2: not valid JSON \(Expecting property name enclosed in double quotes at column 2\)"),
    ('["a", "b"]', "line 2: expected a JSON object, got a JSON array"),
    ('{"title": "T", "text": "x"}', "line 2: the field 'id' is missing"),
    ('{"id": null, "title": "T", "text": "x"}', "line 2: the field 'id' must be a non-empty string or an integer"),
    ('{"id": true, "title": "T", "text": "x"}', "line 2: the field 'id' must be a non-empty string or an integer"),
    ('{"id": "b", "text": "x"}', "line 2: the field 'title' is missing"),
    ('{"id": "b", "title": "T"}', "line 2: the field 'text' is missing"),
    ('{"id": "b", "title": 3, "text": "x"}', "line 2: the field 'title' must be a string, got a JSON number"),
    ('{"id": "b", "title": "T", "text": ["x"]}', "line 2: the field 'text' must be a string, got a JSON array"),
    ('{"id": "b", "title": "T", "text": "   "}', "line 2: the field 'text' is empty"),
    ('{"id": "a", "title": "T", "text": "x"}', "line 2: the id 'a' repeats line 1; ids must be unique"),
]


@pytest.mark.parametrize(("line", "message"), BAD_LINES)
def test_bad_line_is_one_sentence_naming_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "corpus.jsonl"
    path.write_text(GOOD + line + "\n" + GOOD.replace('"a"', '"z"'), encoding="utf-8")
    with pytest.raises(CorpusError, match=message) as caught:
        load_corpus(path)
    text = str(caught.value)
    assert text.startswith(f"{path}, line 2: ")
    assert "\n" not in text and text.endswith(".")


def test_invalid_utf8_empty_and_missing_files(tmp_path: Path) -> None:
    binary = tmp_path / "latin1.jsonl"
    binary.write_bytes(GOOD.encode() + '{"id": "b", "title": "Café", "text": "x"}\n'.encode("latin-1"))
    with pytest.raises(
        CorpusError, match=r"latin1\.jsonl, line 2: not valid UTF-8 \(byte 26 of the line\); save the corpus"
    ):
        load_corpus(binary)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    with pytest.raises(CorpusError, match=r"empty\.jsonl holds no passages"):
        load_corpus(empty)
    with pytest.raises(CorpusError, match=r"absent\.jsonl does not exist; pass a JSONL file"):
        load_corpus(tmp_path / "absent.jsonl")


def test_command_line_reports_a_bad_corpus_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.jsonl"
    path.write_text(GOOD + '{"id": "b", "title": "T", "text": 5}\n')
    env = {"ARPO_CACHE_DIR": str(tmp_path / "cache"), "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-m", "arpo_tools.search", "--corpus", str(path), "--build-only"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"error: {path}, line 2: the field 'text' must be a string, got a JSON number; each line must be a JSON "
        "object with string fields id, title and text."
    ]
    bad_option = subprocess.run(
        [sys.executable, "-m", "arpo_tools.search", "--top-k", "50", "--build-only"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert bad_option.returncode == 2
    assert (
        bad_option.stderr.strip()
        == "error: options: Value error, top_k=50 exceeds max_top_k=20; lower top_k or raise max_top_k"
    )
