"""The embedded corpus: the shipped files are the generator's output, and every question is answerable by search."""

from __future__ import annotations

import ast
import json
import operator
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from arpo_tools.search.index import IndexSettings, SearchIndex
from arpo_tools.search.worldgen import DATA_DIR, PASSAGES_FILE, QUESTIONS_FILE, SEED, generate, to_jsonl

TOP_K = 5  # the tool's default
QUESTIONS = [json.loads(line) for line in (DATA_DIR / QUESTIONS_FILE).read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SearchIndex]:
    with SearchIndex.open(None, IndexSettings(), tmp_path_factory.mktemp("cache")) as opened:
        yield opened


def test_shipped_files_are_the_generators_output_for_the_default_seed() -> None:
    world = generate(SEED)
    assert (DATA_DIR / PASSAGES_FILE).read_text(encoding="utf-8") == to_jsonl(world.passages)
    assert (DATA_DIR / QUESTIONS_FILE).read_text(encoding="utf-8") == to_jsonl(world.questions), (
        "regenerate with: python -m arpo_tools.search.worldgen"
    )


def test_generation_is_deterministic_and_seeded() -> None:
    assert generate(7) == generate(7)
    assert generate(7).passages != generate(8).passages


def test_sizes_and_mix() -> None:
    passages = (DATA_DIR / PASSAGES_FILE).read_text(encoding="utf-8").splitlines()
    assert 300 <= len(passages) <= 2000
    assert (DATA_DIR / PASSAGES_FILE).stat().st_size + (DATA_DIR / QUESTIONS_FILE).stat().st_size < 1_000_000
    kinds = Counter(q["kind"] for q in QUESTIONS)
    assert kinds["fact"] == 120 and kinds["two_hop"] == 40 and kinds["arithmetic"] >= 80
    assert len({q["question"] for q in QUESTIONS}) == len(QUESTIONS)
    assert len({q["id"] for q in QUESTIONS}) == len(QUESTIONS)
    assert all(q["tools"] == (["search", "python"] if q["kind"] == "arithmetic" else ["search"]) for q in QUESTIONS)


_OPS = {ast.Add: operator.add, ast.Sub: operator.sub}


def evaluate(expression: str) -> int:
    """``"1921 - 1874"`` → 47; integers, + and − only."""

    def walk(node: ast.AST) -> int:
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return int(_OPS[type(node.op)](walk(node.left), walk(node.right)))
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return node.value
        raise ValueError(f"unexpected {ast.dump(node)}")

    return walk(ast.parse(expression, mode="eval").body)


def test_answers_follow_from_the_evidence() -> None:
    for q in QUESTIONS:
        facts = [e["fact"] for e in q["evidence"]]
        if q["kind"] == "arithmetic":
            assert q["solution"] is not None
            assert str(evaluate(q["solution"])) == q["answer"], q["id"]
            assert sorted(ast.literal_eval(n) for n in facts) == sorted(
                c.value for c in ast.walk(ast.parse(q["solution"])) if isinstance(c, ast.Constant)
            )
        else:
            assert q["solution"] is None and facts[-1] == q["answer"], q["id"]
        assert len(q["evidence"]) == {"fact": 1, "two_hop": 2, "arithmetic": 2}[q["kind"]]


def test_every_fact_is_found_by_its_query_in_the_top_k(index: SearchIndex) -> None:
    for q in QUESTIONS:
        for evidence in q["evidence"]:
            hits = index.search(evidence["query"], TOP_K)
            found = [h for h in hits if h.id == evidence["passage_id"]]
            assert found, f"{q['id']}: {evidence['query']!r} does not find {evidence['passage_id']}"
            assert evidence["fact"] in found[0].text, q["id"]


def test_each_one_search_question_finds_its_answer_when_asked_as_is(index: SearchIndex) -> None:
    for q in QUESTIONS:
        if q["kind"] == "fact":
            hits = index.search(q["question"], TOP_K)
            assert any(q["answer"] in h.text for h in hits), q["id"]
            assert q["evidence"][0]["passage_id"] in [h.id for h in hits], q["id"]


def test_worldgen_command_writes_the_same_files(tmp_path: Path) -> None:
    from arpo_tools.search.worldgen import main

    assert main(["--out", str(tmp_path)]) == 0
    for name in (PASSAGES_FILE, QUESTIONS_FILE):
        assert (tmp_path / name).read_bytes() == (DATA_DIR / name).read_bytes()
