"""``SearchIndex``: BM25 over a JSONL corpus, built once and cached on disk, loaded fast afterwards.

Backend choice, measured with ``bench/search.py`` on a generated 100k-passage corpus (48 MiB; Zipfian words,
stop words included; 6-word queries; top 10 with passages fetched; every index fed the same tokens). Three runs
on a 2-core CPU, November 2026; times drift between runs, so ranges:

    index                   build      load      queries/s      × rank-bm25   what it brings
    bm25s 0.3.16 (numpy)    13–14 s    0.09 s    2,100–2,550    180–235×      76 KB pure-Python wheel
    SQLite FTS5 bm25()      10–15 s    0.05 s    200–350        21–30×        nothing (standard library)
    tantivy 0.27 (Rust)     5–6 s      <0.01 s   4,300–9,300    380–790×      5–9 MB native wheel, Python ≥ 3.11
    rank-bm25 (baseline)    4–7 s      —         10–12          1×            pure Python, no cache

``bm25s`` is the default. tantivy answers 2–4× more queries a second, but its current wheels need Python ≥ 3.11
(arpo supports 3.10) and bring a native library, while bm25s needs only numpy, which arpo-core already requires.
At ~0.4 ms a query bm25s costs less than one MCP stdio round trip (≈ 1.1 ms) and nothing next to a generation;
its score matrix is memory-mapped, so sixteen rollout workers each running a search server share one copy in the
page cache. Its cost grows with the corpus (it scores every passage a query word touches, into a dense vector):
for a corpus of millions of passages a tantivy backend would be the one to add. FTS5 stays as the backend with no
dependency at all; its ``bm25()`` walks each posting list in SQL, 7–10× slower than bm25s here. A load is
mostly the SHA-256 of the corpus file (≈ 0.05 s for 48 MiB), which is how a changed corpus is noticed.

Cache: ``<cache_dir>/<corpus stem>-<key>/`` where key = SHA-256 of the corpus file's bytes and of every setting
that changes the index (backend, k1, b, stop words, tokenizer and format versions, the bm25s version). A changed
corpus has a new key, so it is rebuilt; the superseded folder of the same corpus path and settings is removed.
A build is written to a temporary folder and renamed into place when complete (``manifest.json`` last), so a
crash never leaves a half index behind, and two processes building at once both end up using one copy.
Passages are kept in the cache too (``docs.jsonl`` plus an offsets array), read back per hit with ``pread``: a
load reads neither the corpus nor the passages.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from arpo_tools.search.backends import BackendName, Bm25Backend, backend_class, bm25s_version
from arpo_tools.search.corpus import DEFAULT_CORPUS, CorpusError, Passage, file_digest, load_corpus
from arpo_tools.search.render import SearchHit
from arpo_tools.search.tokens import TOKENIZER_VERSION, tokenize

__all__ = ["FORMAT_VERSION", "IndexSettings", "SearchIndex"]

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
_DOCS = "docs.jsonl"
_OFFSETS = "doc_offsets.npy"
log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class IndexSettings:
    """What changes an index's content; all of it goes into the cache key."""

    backend: BackendName = "bm25s"
    k1: float = 1.2
    b: float = 0.75
    stopwords: bool = True

    def key_material(self) -> dict[str, Any]:
        material = {**asdict(self), "tokenizer": TOKENIZER_VERSION, "format": FORMAT_VERSION}
        if self.backend == "bm25s":
            material["bm25s"] = bm25s_version()
        return material


class _DocStore:
    """Passages by corpus index: one JSON array ``[id, title, text]`` a line, located through byte offsets."""

    def __init__(self, folder: Path) -> None:
        self._offsets = np.load(folder / _OFFSETS, mmap_mode="r")
        self._fd = os.open(folder / _DOCS, os.O_RDONLY)

    @staticmethod
    def write(folder: Path, passages: list[Passage]) -> None:
        offsets = np.zeros(len(passages) + 1, dtype=np.int64)
        with (folder / _DOCS).open("wb") as handle:
            for i, p in enumerate(passages):
                line = json.dumps([p.id, p.title, p.text], ensure_ascii=False).encode() + b"\n"
                handle.write(line)
                offsets[i + 1] = offsets[i] + len(line)
        np.save(folder / _OFFSETS, offsets)

    def __len__(self) -> int:
        return int(self._offsets.shape[0]) - 1

    def get(self, index: int) -> Passage:
        start, end = int(self._offsets[index]), int(self._offsets[index + 1])
        pid, title, text = json.loads(os.pread(self._fd, end - start, start))
        return Passage(id=pid, title=title, text=text)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class SearchIndex:
    """An opened index. ``SearchIndex.open(corpus)`` builds it the first time, loads it from the cache after."""

    def __init__(self, folder: Path, settings: IndexSettings, manifest: dict[str, Any], *, built: bool) -> None:
        self.folder = folder
        self.settings = settings
        self.manifest = manifest
        self.built = built
        """True when this ``open`` built the index; False when it came from the cache."""
        self._docs = _DocStore(folder)
        try:
            self._backend: Bm25Backend = backend_class(settings.backend).load(folder)
        except BaseException:
            self._docs.close()
            raise

    @classmethod
    def open(
        cls, corpus: Path | str | None = None, settings: IndexSettings | None = None, cache_dir: Path | None = None
    ) -> SearchIndex:
        """The index of ``corpus`` (default: the embedded fictional-world corpus) under ``settings``.

        ``cache_dir`` defaults to ``config.default_cache_dir()``. Raises ``CorpusError`` for a missing or invalid
        corpus (one sentence naming the file and line).
        """
        from arpo_tools.search.config import default_cache_dir

        path = Path(corpus) if corpus is not None else DEFAULT_CORPUS
        settings = settings or IndexSettings()
        if not path.is_file():
            raise CorpusError(f"corpus file {path} does not exist; pass a JSONL file of {{id, title, text}} passages.")
        digest = file_digest(path)
        material = json.dumps({"corpus": digest, **settings.key_material()}, sort_keys=True)
        key = hashlib.sha256(material.encode()).hexdigest()[:20]
        root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        folder = root / f"{_slug(path.stem)}-{key}"
        if (folder / MANIFEST).is_file():
            try:
                return cls(folder, settings, json.loads((folder / MANIFEST).read_text()), built=False)
            except Exception as err:  # a damaged cache is rebuilt, never trusted
                log.warning("search index cache %s is unreadable (%s); rebuilding it", folder, err)
                shutil.rmtree(folder, ignore_errors=True)
        return cls._build(path, digest, key, folder, settings)

    @classmethod
    def _build(cls, path: Path, digest: str, key: str, folder: Path, settings: IndexSettings) -> SearchIndex:
        start = time.perf_counter()
        passages = load_corpus(path)
        token_lists = [tokenize(f"{p.title}\n{p.text}", stopwords=settings.stopwords) for p in passages]
        if not any(token_lists):
            raise CorpusError(f"corpus file {path} has no searchable words (only stop words or punctuation).")
        tmp = folder.parent / f".tmp-{folder.name}-{os.getpid()}-{secrets.token_hex(4)}"
        try:
            tmp.mkdir(parents=True)
        except OSError as err:
            raise OSError(
                f"cannot write the search index cache in {folder.parent} ({err.strerror or err}); point "
                f"$ARPO_CACHE_DIR (or cache_dir) at a writable folder."
            ) from None
        try:
            _DocStore.write(tmp, passages)
            backend_class(settings.backend).build(token_lists, tmp, k1=settings.k1, b=settings.b)
            manifest = {
                "format": FORMAT_VERSION,
                "key": key,
                "corpus": str(path.resolve()),
                "corpus_sha256": digest,
                "passages": len(passages),
                "settings": settings.key_material(),
                "build_seconds": round(time.perf_counter() - start, 3),
            }
            (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
            if folder.exists() and not (folder / MANIFEST).is_file():
                shutil.rmtree(folder, ignore_errors=True)  # a leftover without a manifest is not an index
            try:
                tmp.rename(folder)
            except OSError:
                if not (folder / MANIFEST).is_file():
                    raise
                log.info("another process built %s first; using its copy", folder)  # same key, same content
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        _prune_superseded(folder, manifest)
        return cls(folder, settings, json.loads((folder / MANIFEST).read_text()), built=True)

    def __len__(self) -> int:
        return len(self._docs)

    def passage(self, index: int) -> Passage:
        """The passage at corpus position ``index``."""
        return self._docs.get(index)

    def search(self, query: str, k: int) -> list[SearchHit]:
        """The ≤ k best passages for ``query`` (BM25 > 0), best first; [] when no query word is in the corpus."""
        terms = list(dict.fromkeys(tokenize(query, stopwords=self.settings.stopwords)))
        if not terms or k <= 0:
            return []
        hits = []
        for index, score in self._backend.top_k(terms, k):
            p = self._docs.get(index)
            hits.append(SearchHit(title=p.title, text=p.text, score=score, id=p.id))
        return hits

    def close(self) -> None:
        self._backend.close()
        self._docs.close()

    def __enter__(self) -> SearchIndex:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()


def _slug(stem: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "-_" else "_" for c in stem)[:40]
    return cleaned or "corpus"


def _prune_superseded(folder: Path, manifest: dict[str, Any]) -> None:
    """Remove caches of the same corpus path and settings built from older content of that file."""
    for sibling in folder.parent.glob(f"{folder.name.rsplit('-', 1)[0]}-*"):
        if sibling == folder or not (sibling / MANIFEST).is_file():
            continue
        try:
            other = json.loads((sibling / MANIFEST).read_text())
        except (OSError, ValueError):
            continue
        same_source = other.get("corpus") == manifest["corpus"] and other.get("settings") == manifest["settings"]
        if same_source and other.get("corpus_sha256") != manifest["corpus_sha256"]:
            shutil.rmtree(sibling, ignore_errors=True)
