"""Who answers a search: a small protocol and its three implementations.

* ``LocalSearchProvider`` — BM25 over a local corpus (``SearchIndex``); the default, offline.
* ``ReplaySearchProvider`` — exact query hits from a cache of earlier results such as the reference's
  ``search_cache.json`` (query → ``"Page 1: …\\nPage 2: …"``), optionally falling back to another provider.
* ``WebSearchProvider`` — a generic JSON search API over HTTP behind an API key (Serper-, Brave-style); off
  unless configured. The key is read from an environment variable when the provider is made and never appears
  in an error text.

``make_provider(config)`` builds the one a ``SearchToolConfig`` names. Failures a model can act on raise
``SearchError``; the server turns it into an error result the model reads.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import anyio
import anyio.to_thread

from arpo_tools.search.config import SearchToolConfig
from arpo_tools.search.index import IndexSettings, SearchIndex
from arpo_tools.search.render import SearchHit

if TYPE_CHECKING:
    import httpx2

__all__ = [
    "LocalSearchProvider",
    "ReplaySearchProvider",
    "SearchError",
    "SearchProvider",
    "WebSearchProvider",
    "load_replay_cache",
    "make_provider",
    "normalise_query",
    "split_pages",
]

_PAGE = re.compile(r"(?:^|\n)Page \d+: ")


class SearchError(RuntimeError):
    """A search that failed in a way the model should be told about (e.g. the web API answered 429)."""


class SearchProvider(Protocol):
    """Anything that answers a query with at most ``top_k`` hits, best first."""

    name: str

    async def search(self, query: str, top_k: int) -> list[SearchHit]: ...

    def close(self) -> None: ...


class LocalSearchProvider:
    """BM25 over a ``SearchIndex``; each query runs in a worker thread so the event loop never waits on numpy."""

    name = "local"

    def __init__(self, index: SearchIndex) -> None:
        self.index = index

    async def search(self, query: str, top_k: int) -> list[SearchHit]:
        return await anyio.to_thread.run_sync(self.index.search, query, top_k)

    def close(self) -> None:
        self.index.close()


def normalise_query(query: str) -> str:
    """The replay key of a query: surrounding space stripped, inner whitespace runs made one space."""
    return " ".join(query.split())


def split_pages(result: str) -> list[str]:
    """``"Page 1: a\\nPage 2: b"`` → ``["a", "b"]``; a text without page markers is one page."""
    pages = [p.strip() for p in _PAGE.split(result)]
    return [p for p in pages if p]


def load_replay_cache(path: Path) -> dict[str, str]:
    """A JSON object of query → result text, keys normalised; ``SearchError`` in one sentence when it is not."""
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SearchError(f"replay file {path} does not exist; pass a JSON object of query → result text.") from None
    except (ValueError, UnicodeDecodeError) as err:
        raise SearchError(f"replay file {path} is not valid UTF-8 JSON ({err}); fix or regenerate it.") from None
    if not isinstance(raw, dict):
        raise SearchError(f"replay file {path} must hold a JSON object of query → result text, not a list or value.")
    cache: dict[str, str] = {}
    for query, result in raw.items():
        if not isinstance(result, str):
            raise SearchError(f"replay file {path}: the result for {query[:60]!r} is not a string.")
        cache.setdefault(normalise_query(query), result)
    return cache


class ReplaySearchProvider:
    """Answers queries seen before, exactly as they were answered (pages in their order, no titles)."""

    name = "replay"

    def __init__(self, cache: Mapping[str, str], fallback: SearchProvider | None = None) -> None:
        self.cache = dict(cache)
        self.fallback = fallback
        self.hits = 0
        self.misses = 0

    @classmethod
    def from_file(cls, path: Path, fallback: SearchProvider | None = None) -> ReplaySearchProvider:
        return cls(load_replay_cache(path), fallback)

    async def search(self, query: str, top_k: int) -> list[SearchHit]:
        result = self.cache.get(normalise_query(query))
        if result is None:
            self.misses += 1
            if self.fallback is not None:
                return await self.fallback.search(query, top_k)
            raise SearchError("no cached result for this query: the replay provider answers only queries seen before.")
        self.hits += 1
        return [SearchHit(title="", text=page) for page in split_pages(result)[:top_k]]

    def close(self) -> None:
        if self.fallback is not None:
            self.fallback.close()


class WebSearchProvider:
    """A JSON search API: one request per query, ``timeout_s`` bounded, results read at ``results_path``."""

    name = "web"
    _TITLE_KEYS = ("title", "name")
    _SNIPPET_KEYS = ("snippet", "description", "content", "text", "body")

    def __init__(
        self,
        url: str,
        api_key: str,
        *,
        method: str = "POST",
        count_param: str = "num",
        api_key_header: str = "X-API-KEY",
        results_path: str = "organic",
        timeout_s: float = 10.0,
        transport: httpx2.AsyncBaseTransport | None = None,
    ) -> None:
        import httpx2

        key = f"Bearer {api_key}" if api_key_header.lower() == "authorization" else api_key
        self.url = url
        self.method = method
        self.count_param = count_param
        self.results_path = [part for part in results_path.split(".") if part]
        self._client = httpx2.AsyncClient(
            headers={api_key_header: key, "Accept": "application/json"}, timeout=timeout_s, transport=transport
        )

    async def search(self, query: str, top_k: int) -> list[SearchHit]:
        import httpx2

        fields: dict[str, Any] = {"q": query, self.count_param: top_k}
        try:
            if self.method == "GET":
                response = await self._client.get(self.url, params=fields)
            else:
                response = await self._client.post(self.url, json=fields)
        except httpx2.TimeoutException:
            raise SearchError("the web search API did not answer in time; try again or shorten the query.") from None
        except httpx2.HTTPError as err:
            raise SearchError(f"the web search API could not be reached ({type(err).__name__}).") from None
        if response.status_code != 200:
            raise SearchError(f"the web search API answered HTTP {response.status_code}; try again later.")
        try:
            results: Any = response.json()
        except ValueError:
            raise SearchError("the web search API answered something that is not JSON.") from None
        for part in self.results_path:
            results = results.get(part) if isinstance(results, dict) else None
        if not isinstance(results, list):
            return []
        hits = []
        for item in results:
            if not isinstance(item, dict):
                continue
            title = next((item[k] for k in self._TITLE_KEYS if isinstance(item.get(k), str)), "")
            text = next((item[k] for k in self._SNIPPET_KEYS if isinstance(item.get(k), str)), "")
            if title or text:
                hits.append(SearchHit(title=title, text=text, id=str(item.get("link") or item.get("url") or "")))
        return hits[:top_k]

    async def aclose(self) -> None:
        await self._client.aclose()

    def close(self) -> None:
        """Nothing to do synchronously: the HTTP client's connections close with the process or ``aclose``."""


def make_provider(
    config: SearchToolConfig, *, web_transport: httpx2.AsyncBaseTransport | None = None
) -> SearchProvider:
    """The provider ``config`` names, ready to answer (a local index is built or loaded now, not at the first call)."""

    def local() -> LocalSearchProvider:
        settings = IndexSettings(backend=config.backend, k1=config.k1, b=config.b, stopwords=config.stopwords)
        return LocalSearchProvider(SearchIndex.open(config.corpus, settings, config.cache_dir))

    if config.provider == "local":
        return local()
    if config.provider == "replay":
        assert config.replay_file is not None  # the config's validator guarantees it
        return ReplaySearchProvider.from_file(config.replay_file, local() if config.replay_fallback else None)
    api_key = os.environ.get(config.web_api_key_env, "")
    if not api_key:
        raise SearchError(
            f"provider 'web' needs an API key in ${config.web_api_key_env}; set it, or use provider 'local'."
        )
    assert config.web_url is not None
    return WebSearchProvider(
        config.web_url,
        api_key,
        method=config.web_method,
        count_param=config.web_count_param,
        api_key_header=config.web_api_key_header,
        results_path=config.web_results_path,
        timeout_s=config.web_timeout_s,
        transport=web_transport,
    )
