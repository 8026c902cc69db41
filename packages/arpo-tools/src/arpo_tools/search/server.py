"""The ``search`` MCP tool server: ``build_server(config)`` → an ``MCPServer`` with one tool, ``search``.

``search(query, top_k=config.top_k)`` returns up to ``top_k`` results as lines ``Page i: <title> — <snippet>``
(the reference's ``Page i: …`` layout), snippets cut to ``config.snippet_chars``. ``top_k`` is bounded by the
input schema (1…``max_top_k``); a query longer than ``max_query_chars`` is cut at a word boundary and the result
says so; an empty query, and a failure the model can act on (a replay miss, a web API error), come back as an
error result whose text says what to do. Run it with ``python -m arpo_tools.search`` or
``arpo tools serve search``.
"""

# No ``from __future__ import annotations`` here: the SDK evaluates the tool's annotations, and the bound on
# ``top_k`` comes from the config at build time (a local name that a string annotation could not see).
from pathlib import Path
from typing import Annotated

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import Field

from arpo_tools.search.config import SearchToolConfig
from arpo_tools.search.corpus import DEFAULT_CORPUS
from arpo_tools.search.providers import SearchError, SearchProvider, make_provider
from arpo_tools.search.render import cut, format_hits

__all__ = ["build_server", "prepare_query"]


def prepare_query(query: str, max_chars: int) -> tuple[str, bool]:
    """``query`` stripped and, when longer than ``max_chars``, cut at a word boundary; and whether it was cut."""
    query = query.strip()
    if len(query) <= max_chars:
        return query, False
    return cut(query, max_chars, marker=""), True


def _describe(config: SearchToolConfig) -> str:
    if config.provider == "web":
        source = "the web"
    elif config.provider == "replay":
        source = "cached web search results (queries seen before only)"
    elif config.corpus is None or Path(config.corpus).resolve() == DEFAULT_CORPUS:
        source = "an encyclopedia of a fictional world (its countries, cities, people, companies, mountains, rivers)"
    else:
        source = f"the local corpus {Path(config.corpus).name}"
    return (
        f"Search {source} by keywords (BM25 ranking for local corpora). Returns up to top_k results, one a line, "
        f"as 'Page N: title — snippet'. Short queries naming the entity and the fact work best, e.g. "
        f"'Velmora population'. Queries are cut to {config.max_query_chars} characters."
    )


def build_server(config: SearchToolConfig | None = None, *, provider: SearchProvider | None = None) -> MCPServer:
    """A ready MCP server for ``config`` (default: BM25 over the embedded corpus).

    The local index is built or loaded here, before the first call, so a bad corpus fails at start with a
    ``CorpusError`` and the first query is as fast as the rest. ``provider`` replaces the one ``config`` names
    (tests, custom providers); the caller then owns it.
    """
    config = config or SearchToolConfig()
    provider = provider or make_provider(config)
    server = MCPServer(
        "arpo-search",
        instructions="One tool, `search`: keyword search returning 'Page N: title — snippet' lines.",
    )
    max_top_k = config.max_top_k

    @server.tool(name="search", description=_describe(config), structured_output=False)
    async def search(
        query: Annotated[str, Field(description="Keywords to search for, e.g. a name and the fact wanted.")],
        top_k: Annotated[int, Field(ge=1, le=max_top_k, description=f"How many results, 1 to {max_top_k}.")] = (
            config.top_k
        ),
    ) -> str:
        text, was_cut = prepare_query(query, config.max_query_chars)
        if not text:
            raise ToolError("the query is empty; pass a few keywords, e.g. a name and the fact you want.")
        try:
            hits = await provider.search(text, top_k)
        except SearchError as err:
            raise ToolError(str(err)) from None
        result = format_hits(hits, config.snippet_chars)
        if was_cut:
            result += (
                f"\n(The query was cut to its first {len(text)} characters; the limit is {config.max_query_chars}.)"
            )
        return result

    return server
