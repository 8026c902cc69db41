"""``SearchToolConfig``: every setting of the search tool server, with its default and where that comes from.

Flat on purpose: ``arpo tools serve search -o key=value`` sets any field. Environment is read when the server is
built, never here: the web provider's API key stays in the variable that ``web_api_key_env`` names.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["CACHE_ENV", "SearchToolConfig", "default_cache_dir"]

CACHE_ENV = "ARPO_CACHE_DIR"


def default_cache_dir() -> Path:
    """``$ARPO_CACHE_DIR/search``, else ``~/.cache/arpo/search``."""
    root = os.environ.get(CACHE_ENV)
    return (Path(root) if root else Path.home() / ".cache" / "arpo") / "search"


class SearchToolConfig(BaseModel):
    """Settings of the ``search`` MCP tool: what it searches, how many results, how long they may be."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

    corpus: Path | None = None
    """JSONL file of ``{id, title, text}`` passages. Default ``None``: the embedded corpus about a fictional world
    (``arpo_tools/search/data/world.jsonl``), which backs the default training task's fact questions."""
    provider: Literal["local", "replay", "web"] = "local"
    """Who answers: ``local`` BM25 over ``corpus``; ``replay`` exact query hits from ``replay_file`` (e.g. the
    reference's ``search_cache.json``); ``web`` an HTTP search API behind a key. Default ``local`` (offline)."""
    backend: Literal["bm25s", "sqlite"] = "bm25s"
    """BM25 index for ``local``: ``bm25s`` (sparse matrices on numpy) or ``sqlite`` (FTS5 in the standard library:
    no dependency, ~10× fewer queries/s). Default ``bm25s``; the measurements are in ``index.py``."""
    top_k: int = Field(default=5, ge=1)
    """Results returned when the call names no ``top_k``. Default 5 (the reference's web search returned up to 10
    pages, 8.4 on average in ``search_cache.json``; 5 local passages keep the context short)."""
    max_top_k: int = Field(default=20, ge=1, le=100)
    """Largest ``top_k`` a call may ask for; the tool's input schema says so. Default 20."""
    snippet_chars: int = Field(default=400, ge=40, le=20_000)
    """Characters of passage text shown per result, cut at a word boundary and marked with " …". Default 400
    (the reference's pages are at most 384 characters, 175 on average)."""
    max_query_chars: int = Field(default=300, ge=10, le=20_000)
    """Longer queries are cut to this many characters (at a word boundary) and the result says so. Default 300
    (998 of the reference's 1,000 cached queries are shorter than 215)."""
    cache_dir: Path | None = None
    """Where built indexes are kept, one folder per corpus content and settings. Default ``None``:
    ``$ARPO_CACHE_DIR/search``, else ``~/.cache/arpo/search``."""
    stopwords: bool = True
    """Drop English stop words from passages and queries. Default on (they carry almost no BM25 weight)."""
    k1: float = Field(default=1.2, gt=0, le=10)
    """BM25 term-frequency saturation. Default 1.2 (Lucene's and FTS5's; FTS5 cannot change it)."""
    b: float = Field(default=0.75, ge=0, le=1)
    """BM25 length normalisation. Default 0.75 (Lucene's and FTS5's; FTS5 cannot change it)."""
    replay_file: Path | None = None
    """``replay``: a JSON object query → result text (``"Page 1: …\\nPage 2: …"``). Default ``None``."""
    replay_fallback: bool = False
    """``replay``: answer a query that is not in ``replay_file`` from the local index over ``corpus``. Default off
    (a miss says so)."""
    web_url: str | None = None
    """``web``: the search API's endpoint, e.g. ``https://google.serper.dev/search``. Default ``None``."""
    web_method: Literal["GET", "POST"] = "POST"
    """``web``: ``POST`` sends ``{"q": query, <web_count_param>: k}`` as JSON; ``GET`` sends them as URL
    parameters. Default ``POST``."""
    web_count_param: str = "num"
    """``web``: the request field holding the number of results. Default ``num`` (Serper; Brave uses ``count``)."""
    web_api_key_env: str = "ARPO_SEARCH_API_KEY"
    """``web``: environment variable holding the API key (read when the server starts). Default
    ``ARPO_SEARCH_API_KEY``."""
    web_api_key_header: str = "X-API-KEY"
    """``web``: request header carrying the key; ``Authorization`` sends ``Bearer <key>``. Default ``X-API-KEY``."""
    web_results_path: str = "organic"
    """``web``: dotted path to the list of results in the response JSON, each with a title (``title``/``name``) and
    a snippet (``snippet``/``description``/``content``/``text``). Default ``organic`` (Serper; Brave:
    ``web.results``)."""
    web_timeout_s: float = Field(default=10.0, gt=0, le=120)
    """``web``: seconds before a request is abandoned (the call then returns an error text). Default 10."""

    @model_validator(mode="after")
    def _consistent(self) -> SearchToolConfig:
        if self.top_k > self.max_top_k:
            raise ValueError(f"top_k={self.top_k} exceeds max_top_k={self.max_top_k}; lower top_k or raise max_top_k")
        if self.backend == "sqlite" and (self.k1, self.b) != (1.2, 0.75):
            raise ValueError("the sqlite backend (FTS5 bm25()) fixes k1=1.2 and b=0.75; use backend='bm25s' to change")
        if self.provider == "replay" and self.replay_file is None:
            raise ValueError("provider='replay' needs replay_file, a JSON object of query → result text")
        if self.provider == "web" and not self.web_url:
            raise ValueError("provider='web' needs web_url, the search API's endpoint")
        return self
