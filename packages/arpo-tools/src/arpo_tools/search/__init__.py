"""The search tool: BM25 over a local JSONL corpus (or replayed / web results) served as an MCP tool.

    from arpo_tools.search import SearchToolConfig, build_server
    build_server(SearchToolConfig(corpus="passages.jsonl")).run("stdio")

``python -m arpo_tools.search --corpus FILE`` does the same from a shell. With no corpus it searches the embedded
one, an encyclopedia of a fictional world made by ``worldgen`` (questions over it: ``data/world_questions.jsonl``).
"""

from __future__ import annotations

from arpo_tools.search.config import SearchToolConfig, default_cache_dir
from arpo_tools.search.corpus import DEFAULT_CORPUS, CorpusError, Passage, load_corpus
from arpo_tools.search.index import IndexSettings, SearchIndex
from arpo_tools.search.providers import (
    LocalSearchProvider,
    ReplaySearchProvider,
    SearchError,
    SearchProvider,
    WebSearchProvider,
    make_provider,
)
from arpo_tools.search.render import SearchHit, format_hits
from arpo_tools.search.server import build_server

__all__ = [
    "DEFAULT_CORPUS",
    "CorpusError",
    "IndexSettings",
    "LocalSearchProvider",
    "Passage",
    "ReplaySearchProvider",
    "SearchError",
    "SearchHit",
    "SearchIndex",
    "SearchProvider",
    "SearchToolConfig",
    "WebSearchProvider",
    "build_server",
    "default_cache_dir",
    "format_hits",
    "load_corpus",
    "make_provider",
]
