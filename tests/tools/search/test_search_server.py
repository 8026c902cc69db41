"""The ``search`` MCP tool in process (``mcp.Client(server)``): schema, bounds, result text, the three providers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx2
import mcp
import pytest
from pydantic import ValidationError

from arpo_tools.search import (
    ReplaySearchProvider,
    SearchError,
    SearchToolConfig,
    WebSearchProvider,
    build_server,
    make_provider,
)
from arpo_tools.search.render import NO_RESULTS, SearchHit, cut, format_hits
from arpo_tools.search.server import prepare_query
from arpo_tools.search.worldgen import DATA_DIR, QUESTIONS_FILE

pytestmark = pytest.mark.anyio
QUESTION = next(  # a one-search question whose answer sits in a person's main passage
    q
    for q in map(json.loads, (DATA_DIR / QUESTIONS_FILE).read_text(encoding="utf-8").splitlines())
    if q["question"].startswith("In which city was ")
)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.getbasetemp() / "search-server-cache"  # shared by the module's tests: built once


@pytest.fixture
def small_corpus(tmp_path: Path) -> Path:
    rows = [
        {"id": "long", "title": "Long passage", "text": "granite " + "word " * 400 + "end"},
        {"id": "multi", "title": "Multi\nline title", "text": "first line\nsecond line granite\n\nthird"},
        {"id": "zh", "title": "東京", "text": "東京は日本の首都です。"},
    ]
    path = tmp_path / "small.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


async def call(server: Any, **arguments: Any) -> tuple[str, bool]:
    async with mcp.Client(server) as client:
        result = await client.call_tool("search", arguments)
    return result.content[0].text, result.is_error


async def test_schema_names_the_bounds(cache: Path) -> None:
    server = build_server(SearchToolConfig(cache_dir=cache, top_k=3, max_top_k=7))
    async with mcp.Client(server) as client:
        tools = (await client.list_tools()).tools
    assert [t.name for t in tools] == ["search"]
    schema = tools[0].input_schema
    assert schema["required"] == ["query"]
    assert schema["properties"]["query"]["type"] == "string"
    assert schema["properties"]["top_k"] == {
        "default": 3, "description": "How many results, 1 to 7.", "maximum": 7, "minimum": 1, "title": "Top K",
        "type": "integer",
    }  # fmt: skip
    assert "fictional world" in (tools[0].description or "")


async def test_default_corpus_answers_a_fact_question(cache: Path) -> None:
    server = build_server(SearchToolConfig(cache_dir=cache))
    text, is_error = await call(server, query=QUESTION["question"])
    assert not is_error
    lines = text.splitlines()
    assert len(lines) == 5 and [line.split(":")[0] for line in lines] == [f"Page {i}" for i in range(1, 6)]
    assert QUESTION["answer"] in lines[0]
    name = QUESTION["question"].removeprefix("In which city was ").removesuffix(" born?")
    assert lines[0].startswith(f"Page 1: {name} — {name} (born ")
    one, _ = await call(server, query=QUESTION["question"], top_k=1)
    assert one == lines[0]


async def test_top_k_and_empty_query_are_refused_with_a_reason(cache: Path) -> None:
    server = build_server(SearchToolConfig(cache_dir=cache, max_top_k=10))
    for bad in (0, 11, -1):
        text, is_error = await call(server, query="capital", top_k=bad)
        assert is_error and "top_k" in text
    text, is_error = await call(server, query="capital", top_k=10)
    assert not is_error and len(text.splitlines()) == 10
    for empty in ("", "   \n\t"):
        text, is_error = await call(server, query=empty)
        assert is_error and text.endswith("the query is empty; pass a few keywords, e.g. a name and the fact you want.")
    text, is_error = await call(server, top_k=2)
    assert is_error and "query" in text


async def test_long_queries_are_cut_and_the_result_says_so(cache: Path) -> None:
    server = build_server(SearchToolConfig(cache_dir=cache, max_query_chars=40))
    query = QUESTION["question"] + " and then a great deal of padding words " * 20
    text, is_error = await call(server, query=query)
    assert not is_error
    *pages, note = text.splitlines()
    assert QUESTION["answer"] in pages[0]
    assert note.startswith("(The query was cut to its first ") and note.endswith("the limit is 40.)")
    assert prepare_query("  short  ", 40) == ("short", False)
    cut_query, was_cut = prepare_query("alpha beta gamma delta", 12)
    assert (cut_query, was_cut) == ("alpha beta", True)


async def test_snippets_are_cut_one_line_and_unicode_survives(small_corpus: Path, tmp_path: Path) -> None:
    server = build_server(SearchToolConfig(corpus=small_corpus, cache_dir=tmp_path / "c", snippet_chars=60))
    text, _ = await call(server, query="granite", top_k=5)
    lines = text.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("Page 1: Multi line title — first line second line granite third")
    assert lines[1].startswith("Page 2: Long passage — granite word") and lines[1].endswith(" …")
    assert len(lines[1].split(" — ", 1)[1]) <= 60
    text, _ = await call(server, query="首都はどこ")
    assert text == "Page 1: 東京 — 東京は日本の首都です。"
    text, is_error = await call(server, query="zeppelin")
    assert text == NO_RESULTS and not is_error
    assert "small.jsonl" in (await _description(server))


async def _description(server: Any) -> str:
    async with mcp.Client(server) as client:
        return (await client.list_tools()).tools[0].description or ""


def test_format_and_cut() -> None:
    assert format_hits([], 100) == NO_RESULTS
    hits = [SearchHit("T", "a b c"), SearchHit("", "untitled page")]
    assert format_hits(hits, 100) == "Page 1: T — a b c\nPage 2: untitled page"
    assert cut("abcdefghij", 10) == "abcdefghij"
    assert cut("alpha beta gamma", 12) == "alpha …"
    assert cut("supercalifragilistic", 8) == "superc …"  # no space to cut at: cut inside the word


# ---------------------------------------------------------------- replay

REPLAY = {
    "Who founded Velmora?": "Page 1: Velmora was founded by Ana Brel in 1874 …\nPage 2: Brel was born in 1840.\n"
    "Page 3: …",
    "search query: capital of Ostra": "Page 1: The capital of Ostra is Kell.",
}


async def test_replay_answers_exact_queries_and_says_when_it_cannot(tmp_path: Path, cache: Path) -> None:
    path = tmp_path / "cache.json"
    path.write_text(json.dumps(REPLAY))
    server = build_server(SearchToolConfig(provider="replay", replay_file=path, cache_dir=cache))
    text, is_error = await call(server, query="  Who founded   Velmora? ", top_k=2)
    assert not is_error
    assert text == "Page 1: Velmora was founded by Ana Brel in 1874 …\nPage 2: Brel was born in 1840."
    text, _ = await call(server, query="search query: capital of Ostra")
    assert text == "Page 1: The capital of Ostra is Kell."
    text, is_error = await call(server, query="Who founded velmora?")
    assert is_error and "no cached result for this query" in text

    fallback = build_server(
        SearchToolConfig(provider="replay", replay_file=path, replay_fallback=True, cache_dir=cache)
    )
    text, is_error = await call(fallback, query=QUESTION["question"])
    assert not is_error and QUESTION["answer"] in text.splitlines()[0]


async def test_replay_file_errors_are_one_sentence(tmp_path: Path) -> None:
    cases = {"list.json": "[1, 2]", "bad.json": "{oops", "value.json": '{"q": 3}'}
    expected = {
        "list.json": "must hold a JSON object",
        "bad.json": "is not valid UTF-8 JSON",
        "value.json": "is not a string",
    }
    for name, content in cases.items():
        (tmp_path / name).write_text(content)
        with pytest.raises(SearchError, match=expected[name]):
            ReplaySearchProvider.from_file(tmp_path / name)
    with pytest.raises(SearchError, match="does not exist"):
        ReplaySearchProvider.from_file(tmp_path / "absent.json")


# ---------------------------------------------------------------- web


@pytest.fixture
def web_requests() -> list[httpx2.Request]:
    return []


def fake_api(seen: list[httpx2.Request], status: int = 200, body: Any = None) -> httpx2.MockTransport:
    def handle(request: httpx2.Request) -> httpx2.Response:
        seen.append(request)
        if body is None:
            return httpx2.Response(status, json={"organic": [
                {"title": "Result A", "snippet": "alpha snippet", "link": "https://a.example"},
                {"name": "Result B", "description": "beta snippet"},
                {"unrelated": True},
                "not a dict",
            ]})  # fmt: skip
        return httpx2.Response(status, content=body)

    return httpx2.MockTransport(handle)


async def test_web_provider_is_off_by_default_and_needs_a_key(monkeypatch: pytest.MonkeyPatch) -> None:
    assert SearchToolConfig().provider == "local"
    monkeypatch.delenv("ARPO_SEARCH_API_KEY", raising=False)
    with pytest.raises(SearchError, match=r"needs an API key in \$ARPO_SEARCH_API_KEY"):
        make_provider(SearchToolConfig(provider="web", web_url="https://search.example/api"))


async def test_web_provider_sends_the_key_and_reads_results(
    monkeypatch: pytest.MonkeyPatch, web_requests: list[httpx2.Request]
) -> None:
    monkeypatch.setenv("MY_SEARCH_KEY", "sekrit")
    config = SearchToolConfig(provider="web", web_url="https://search.example/api", web_api_key_env="MY_SEARCH_KEY")
    provider = make_provider(config, web_transport=fake_api(web_requests))
    assert isinstance(provider, WebSearchProvider)
    text, is_error = await call(build_server(config, provider=provider), query="alpha", top_k=3)
    await provider.aclose()
    assert not is_error
    assert text == "Page 1: Result A — alpha snippet\nPage 2: Result B — beta snippet"
    (request,) = web_requests
    assert request.method == "POST" and request.headers["X-API-KEY"] == "sekrit"
    assert json.loads(request.content) == {"q": "alpha", "num": 3}


async def test_web_provider_get_bearer_and_nested_results(web_requests: list[httpx2.Request]) -> None:
    body = json.dumps({"web": {"results": [{"title": "T", "content": "c"}]}}).encode()
    provider = WebSearchProvider(
        "https://search.example/api", "k", method="GET", count_param="count", api_key_header="Authorization",
        results_path="web.results", transport=fake_api(web_requests, body=body),
    )  # fmt: skip
    hits = await provider.search("two words", 4)
    await provider.aclose()
    assert [(h.title, h.text) for h in hits] == [("T", "c")]
    assert web_requests[0].headers["Authorization"] == "Bearer k"
    assert dict(web_requests[0].url.params) == {"q": "two words", "count": "4"}


async def test_web_failures_become_error_text_without_the_key(web_requests: list[httpx2.Request]) -> None:
    def timeout(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ReadTimeout("slow", request=request)

    cases = [
        (fake_api(web_requests, status=429, body=b"{}"), "the web search API answered HTTP 429; try again later."),
        (fake_api(web_requests, body=b"<html>"), "the web search API answered something that is not JSON."),
        (httpx2.MockTransport(timeout), "the web search API did not answer in time; try again or shorten the query."),
    ]
    config = SearchToolConfig(provider="web", web_url="https://search.example/api")
    for transport, message in cases:
        provider = WebSearchProvider("https://search.example/api", "sekrit-key", transport=transport)
        text, is_error = await call(build_server(config, provider=provider), query="alpha")
        await provider.aclose()
        assert is_error and text.endswith(message) and "sekrit" not in text


# ---------------------------------------------------------------- config


def test_config_is_frozen_strict_and_consistent() -> None:
    config = SearchToolConfig()
    assert (config.top_k, config.max_top_k, config.snippet_chars, config.max_query_chars) == (5, 20, 400, 300)
    assert config.corpus is None and config.backend == "bm25s" and config.provider == "local"
    with pytest.raises(ValidationError):
        config.top_k = 3  # type: ignore[misc]
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        SearchToolConfig(topk=3)  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="top_k=9 exceeds max_top_k=8"):
        SearchToolConfig(top_k=9, max_top_k=8)
    with pytest.raises(ValidationError, match=r"fixes k1=1\.2 and b=0\.75"):
        SearchToolConfig(backend="sqlite", k1=0.9)
    with pytest.raises(ValidationError, match="needs replay_file"):
        SearchToolConfig(provider="replay")
    with pytest.raises(ValidationError, match="needs web_url"):
        SearchToolConfig(provider="web")
    for name, field in SearchToolConfig.model_fields.items():
        assert field.description and "Default" in field.description, name


async def test_providers_are_shared_by_sessions(cache: Path) -> None:
    server = build_server(SearchToolConfig(cache_dir=cache))
    first, _ = await call(server, query=QUESTION["question"])
    second, _ = await call(server, query=QUESTION["question"])
    assert first == second
