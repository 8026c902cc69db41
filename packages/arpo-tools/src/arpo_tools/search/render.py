"""Search hits and the text a model reads, in the reference's page layout.

The reference's search tool answered with ``"Page 1: <snippet>\\nPage 2: <snippet>…"`` (see
``search_cache.json``): one line per result, snippets cut and ended with " …". Here a page line also names its
source: ``Page 1: <title> — <snippet>`` (the title is left out when a provider has none, as replayed pages).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["NO_RESULTS", "SearchHit", "cut", "format_hits", "one_line"]

NO_RESULTS = "No results found for this query."
_TITLE_CHARS = 120
_SPACES = re.compile(r"\s+")


@dataclass(frozen=True, slots=True)
class SearchHit:
    """One result: ``title`` may be empty; ``score`` is the provider's (BM25 for local, 0 when unknown)."""

    title: str
    text: str
    score: float = 0.0
    id: str = ""


def one_line(text: str) -> str:
    """Whitespace runs (newlines included) → one space, so a page stays on one line."""
    return _SPACES.sub(" ", text).strip()


def cut(text: str, limit: int, marker: str = " …") -> str:
    """``text`` if it fits in ``limit`` characters, else its longest word-bounded prefix that fits with ``marker``."""
    if len(text) <= limit:
        return text
    room = max(limit - len(marker), 1)
    head = text[:room]
    space = head.rfind(" ")
    if space >= room // 2:  # cut at a word boundary unless that loses more than half
        head = head[:space]
    return head.rstrip() + marker


def format_hits(hits: Sequence[SearchHit], snippet_chars: int) -> str:
    """``Page i: title — snippet`` lines, or ``NO_RESULTS``."""
    if not hits:
        return NO_RESULTS
    lines = []
    for rank, hit in enumerate(hits, start=1):
        snippet = cut(one_line(hit.text), snippet_chars)
        title = cut(one_line(hit.title), _TITLE_CHARS)
        lines.append(f"Page {rank}: {title} — {snippet}" if title else f"Page {rank}: {snippet}")
    return "\n".join(lines)
