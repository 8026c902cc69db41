"""The search server as a real subprocess over stdio (``python -m arpo_tools.search``), and on the paper's data:
the reference's ``search_cache.json`` split into passages as a realistic corpus, and replayed as a provider."""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest
from mcp import ClientSession, StdioServerParameters, stdio_client

from arpo_tools.search.index import IndexSettings, SearchIndex
from arpo_tools.search.providers import split_pages
from arpo_tools.search.worldgen import DATA_DIR, QUESTIONS_FILE

pytestmark = pytest.mark.anyio
QUESTIONS = [json.loads(line) for line in (DATA_DIR / QUESTIONS_FILE).read_text(encoding="utf-8").splitlines()]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@asynccontextmanager
async def stdio_search(cache: Path, *args: str) -> AsyncIterator[ClientSession]:
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "arpo_tools.search", *args], env={"ARPO_CACHE_DIR": str(cache)}
    )
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        yield session


async def search(session: ClientSession, query: str, **extra: object) -> tuple[str, bool]:
    result = await session.call_tool("search", {"query": query, **extra})
    return result.content[0].text, result.is_error  # type: ignore[union-attr]


async def test_default_corpus_over_stdio(tmp_path: Path) -> None:
    async with stdio_search(tmp_path / "cache") as session:
        tools = (await session.list_tools()).tools
        assert [t.name for t in tools] == ["search"]
        assert tools[0].input_schema["properties"]["top_k"]["maximum"] == 20
        one_hop = [q for q in QUESTIONS if q["kind"] == "fact"][:5]
        for q in one_hop:
            text, is_error = await search(session, q["question"], top_k=3)
            assert not is_error and len(text.splitlines()) == 3
            assert q["answer"] in text.splitlines()[0], q["id"]
        text, is_error = await search(session, "population", top_k=21)
        assert is_error and "less than or equal to 20" in text
        text, is_error = await search(session, " ")
        assert is_error and "the query is empty" in text

        # One session, many calls in flight at once: each gets its own answer.
        answers: dict[str, str] = {}

        async def ask(question: str) -> None:
            answers[question] = (await search(session, question, top_k=1))[0]

        async with anyio.create_task_group() as group:
            for q in one_hop * 4:
                group.start_soon(ask, q["question"])
        assert all(q["answer"] in answers[q["question"]] for q in one_hop)
    assert (tmp_path / "cache" / "search").is_dir()  # the index went to $ARPO_CACHE_DIR


def reference_passages(shared_data: Path, out: Path) -> tuple[dict[str, str], Path]:
    cache = json.loads((shared_data / "arpo-reference" / "search_cache.json").read_text(encoding="utf-8"))
    rows = [
        {"id": f"q{i:04d}-p{j}", "title": "", "text": page}
        for i, result in enumerate(cache.values())
        for j, page in enumerate(split_pages(result), 1)
    ]
    out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return cache, out


def test_reference_results_as_a_corpus_find_their_own_query(shared_data: Path, tmp_path: Path) -> None:
    cache, corpus = reference_passages(shared_data, tmp_path / "reference.jsonl")
    with SearchIndex.open(corpus, IndexSettings(), tmp_path / "cache") as index:
        assert len(index) > 8000  # 1,000 queries × 8.4 pages
        own = 0
        for i, query in enumerate(cache):
            hits = index.search(query.removeprefix("search query: "), 5)
            own += any(h.id.startswith(f"q{i:04d}-") for h in hits)
    # A query's own result pages come back in the top 5 for 97% of the 1,000 queries (measured): BM25 works on
    # real web snippets, not just on the generated corpus.
    assert own / len(cache) >= 0.93


async def test_reference_corpus_and_replay_over_stdio(shared_data: Path, tmp_path: Path) -> None:
    cache, corpus = reference_passages(shared_data, tmp_path / "reference.jsonl")
    query, result = next(iter(cache.items()))
    async with stdio_search(tmp_path / "cache", "--corpus", str(corpus)) as session:
        text, is_error = await search(session, query)
        assert not is_error
        assert all(line.startswith(f"Page {n}: ") for n, line in enumerate(text.splitlines(), 1))
        assert text.splitlines()[0].removeprefix("Page 1: ") in split_pages(result)  # no title: the reference's form

    replay_file = shared_data / "arpo-reference" / "search_cache.json"
    async with stdio_search(tmp_path / "cache", "--provider", "replay", "--replay-file", str(replay_file)) as session:
        text, is_error = await search(session, query, top_k=20)
        assert not is_error and text == result  # an exact hit replays the reference's answer as it was
        text, is_error = await search(session, query, top_k=2)
        assert text.splitlines() == result.splitlines()[:2]
        text, is_error = await search(session, query + " (reworded)")
        assert is_error and "no cached result for this query" in text
