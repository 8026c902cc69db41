"""The two BM25 index backends: ``bm25s`` (default) and SQLite FTS5. Both are fed the same tokens (``tokens.py``).

For a query q of distinct terms t and a passage d of |d| tokens, with N passages, n(t) of them containing t,
f(t, d) the count of t in d and avgdl the mean |d|:

    score(q, d) = Σ_t idf(t) · f(t, d) / (f(t, d) + k1 · (1 − b + b · |d| / avgdl))

* ``bm25s`` (method ``lucene``): idf(t) = ln(1 + (N − n(t) + 0.5) / (n(t) + 0.5)), always positive; scores are
  precomputed per (term, passage) into a sparse term-major matrix, so a query sums a few matrix rows (numpy).
* ``sqlite``: FTS5's ``bm25()`` with idf(t) = ln((N − n(t) + 0.5) / (n(t) + 0.5)), floored at 1e-6 for terms in
  more than half the passages, and (k1, b) fixed at (1.2, 0.75). Its ranking can differ from ``bm25s`` only
  through that idf; it walks every posting list of the query, so common words make it slow.

FTS5 also multiplies each term by (k1 + 1), which bm25s (like Lucene ≥ 8) leaves out: it scales every score
alike and changes no ranking. Ties are broken by passage order, so results are deterministic.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np

if TYPE_CHECKING:
    from numpy.typing import NDArray

__all__ = ["BackendName", "Bm25Backend", "Bm25sBackend", "SqliteBackend", "backend_class", "bm25s_version"]

BackendName = Literal["bm25s", "sqlite"]
BM25S_REQUIREMENT = "bm25s>=0.3.16,<0.4"


class Bm25Backend(Protocol):
    """A built index on disk, opened for queries. ``top_k`` is called from worker threads: it must be safe so."""

    def top_k(self, terms: Sequence[str], k: int) -> list[tuple[int, float]]:
        """The ≤ k best passages (index in corpus order, score > 0) for distinct query ``terms``, best first."""
        ...

    def close(self) -> None: ...


def backend_class(name: BackendName) -> type[Bm25sBackend] | type[SqliteBackend]:
    return Bm25sBackend if name == "bm25s" else SqliteBackend


def _import_bm25s() -> Any:
    try:
        import bm25s  # type: ignore[import-untyped]
    except ImportError as err:  # pragma: no cover - bm25s is a dependency of arpo-tools
        raise ImportError(
            f"the bm25s search backend needs bm25s: pip install '{BM25S_REQUIREMENT}' (or use backend='sqlite')"
        ) from err
    return bm25s


def bm25s_version() -> str:
    from importlib.metadata import version

    return version("bm25s")


def _best(scores: NDArray[np.float32], k: int) -> list[tuple[int, float]]:
    """Top k of a dense score vector, score > 0 only, best first, ties broken by passage index."""
    candidates = np.flatnonzero(scores > 0)
    if candidates.size > k > 0:
        kth = np.partition(scores[candidates], candidates.size - k)[candidates.size - k]
        candidates = candidates[scores[candidates] >= kth]
    order = np.lexsort((candidates, -scores[candidates]))[: max(k, 0)]
    return [(int(i), float(scores[i])) for i in candidates[order]]


class Bm25sBackend:
    """bm25s's sparse score matrix, memory-mapped from the cache (many servers on one machine share the pages)."""

    folder_name = "bm25s"

    def __init__(self, retriever: Any) -> None:
        self._retriever = retriever
        self._vocab: dict[str, int] = retriever.vocab_dict

    @classmethod
    def build(cls, token_lists: Sequence[Sequence[str]], folder: Path, *, k1: float, b: float) -> None:
        bm25s = _import_bm25s()
        vocab: dict[str, int] = {}
        ids = [[vocab.setdefault(t, len(vocab)) for t in tokens] for tokens in token_lists]
        retriever = bm25s.BM25(k1=k1, b=b, method="lucene")
        retriever.index((ids, vocab), create_empty_token=False, show_progress=False)
        retriever.save(str(folder / cls.folder_name), show_progress=False)

    @classmethod
    def load(cls, folder: Path) -> Bm25sBackend:
        bm25s = _import_bm25s()
        return cls(bm25s.BM25.load(str(folder / cls.folder_name), mmap=True, show_progress=False))

    def top_k(self, terms: Sequence[str], k: int) -> list[tuple[int, float]]:
        ids = [self._vocab[t] for t in terms if t in self._vocab]
        if not ids:
            return []
        return _best(self._retriever.get_scores_from_ids(ids), k)

    def close(self) -> None:
        self._retriever = None


class SqliteBackend:
    """An FTS5 table of the space-joined tokens; no dependency beyond the standard library."""

    file_name = "fts5.sqlite3"

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._connection = connection
        self._lock = threading.Lock()

    @classmethod
    def build(cls, token_lists: Sequence[Sequence[str]], folder: Path, *, k1: float, b: float) -> None:
        del k1, b  # FTS5's bm25() fixes them at 1.2 and 0.75 (the config refuses other values for this backend)
        connection = sqlite3.connect(folder / cls.file_name)
        try:
            connection.execute(
                "CREATE VIRTUAL TABLE passages USING fts5(body, tokenize = 'unicode61 remove_diacritics 0')"
            )
            rows = ((i, " ".join(tokens)) for i, tokens in enumerate(token_lists))
            connection.executemany("INSERT INTO passages(rowid, body) VALUES (?, ?)", rows)
            connection.execute("INSERT INTO passages(passages) VALUES ('optimize')")
            connection.commit()
        finally:
            connection.close()

    @classmethod
    def load(cls, folder: Path) -> SqliteBackend:
        uri = (folder / cls.file_name).resolve().as_uri() + "?mode=ro"
        return cls(sqlite3.connect(uri, uri=True, check_same_thread=False))

    def top_k(self, terms: Sequence[str], k: int) -> list[tuple[int, float]]:
        if not terms:
            return []
        match = " OR ".join('"' + t.replace('"', '""') + '"' for t in terms)  # "term": a one-token phrase
        with self._lock:
            rows = self._connection.execute(
                "SELECT rowid, bm25(passages) AS s FROM passages WHERE passages MATCH ? ORDER BY s, rowid LIMIT ?",
                (match, k),
            ).fetchall()
        return [(int(rowid), -float(score)) for rowid, score in rows if score < 0]

    def close(self) -> None:
        self._connection.close()
