"""Search tool: queries/s of arpo's BM25 index against rank-bm25, on a generated 100k-passage corpus, in one run.

    .venv/bin/python bench/search.py [--passages 100000] [--queries 500] [--baseline-queries 20]

The corpus is made here, seeded: words drawn from a Zipf law (s = 1.07) over a vocabulary whose most frequent
words are the English stop words and the rest invented (60k words in all), 30–120 words a passage, a title of
three words. A query is 6 words of a random passage, stop words included, as a model writes them.

Columns, for each index: build (from the JSONL file to a ready index, cache written), load (open from the
cache: arpo's backends only), queries/s (one query at a time, top 10, passages fetched), × rank-bm25 (queries/s
over the baseline's), top-10 overlap with arpo's default ranking on the baseline's queries (a sanity check:
the formulas differ slightly in idf). Every tool is fed arpo's tokens, so they all rank the same words.

rank-bm25 is the baseline and no dependency of arpo: ``.venv/bin/pip install rank-bm25``; without it its
column is skipped. tantivy is measured when installed (``pip install tantivy``), as the third candidate.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from arpo_tools.search.index import IndexSettings, SearchIndex
from arpo_tools.search.tokens import STOPWORDS, tokenize

GOAL = 20.0  # issue 3: ≥ 20× rank-bm25's queries/s


def generate_corpus(passages: int, seed: int = 0, vocabulary: int = 60_000) -> list[dict[str, str]]:
    """``passages`` JSON-ready ``{id, title, text}`` rows of Zipfian text (see the module docstring)."""
    rng = np.random.default_rng(seed)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    words = sorted(STOPWORDS)
    seen = set(words)
    while len(words) < vocabulary:
        word = "".join(rng.choice(letters, int(rng.integers(3, 11))))
        if word not in seen:
            seen.add(word)
            words.append(word)
    ranks = np.arange(1, vocabulary + 1, dtype=np.float64)
    weights = 1.0 / ranks**1.07
    lengths = rng.integers(30, 121, passages)
    drawn = rng.choice(vocabulary, size=int(lengths.sum()), p=weights / weights.sum())
    titles = rng.integers(len(STOPWORDS), vocabulary, (passages, 3))
    rows = []
    start = 0
    for i, length in enumerate(lengths):
        text = " ".join([words[w] for w in drawn[start : start + length]])
        start += int(length)
        title = " ".join([words[w].capitalize() for w in titles[i]])
        rows.append({"id": f"p{i}", "title": title, "text": text + "."})
    return rows


def make_queries(rows: Sequence[dict[str, str]], count: int, seed: int = 1) -> list[str]:
    rng = random.Random(seed)
    queries = []
    for _ in range(count):
        words = rows[rng.randrange(len(rows))]["text"].rstrip(".").split()
        queries.append(" ".join(rng.sample(words, 6)))
    return queries


def queries_per_second(search: Callable[[str], object], queries: Sequence[str]) -> float:
    for query in queries[:5]:  # warm the page cache and any lazy state
        search(query)
    start = time.perf_counter()
    for query in queries:
        search(query)
    return len(queries) / (time.perf_counter() - start)


def measure_arpo(corpus: Path, backend: str, queries: Sequence[str], cache: Path) -> dict[str, float]:
    settings = IndexSettings(backend=backend)  # type: ignore[arg-type]
    start = time.perf_counter()
    SearchIndex.open(corpus, settings, cache).close()
    build = time.perf_counter() - start
    loads = []
    for _ in range(3):
        start = time.perf_counter()
        index = SearchIndex.open(corpus, settings, cache)
        loads.append(time.perf_counter() - start)
        assert not index.built
        if _ < 2:
            index.close()
    qps = queries_per_second(lambda q: index.search(q, 10), queries)
    index.close()
    return {"build": build, "load": statistics.median(loads), "qps": qps}


def arpo_top10(corpus: Path, queries: Sequence[str], cache: Path) -> list[list[str]]:
    with SearchIndex.open(corpus, IndexSettings(), cache) as index:
        return [[hit.id for hit in index.search(q, 10)] for q in queries]


def measure_rank_bm25(
    rows: Sequence[dict[str, str]], queries: Sequence[str]
) -> tuple[dict[str, float], list[list[str]]]:
    from rank_bm25 import BM25Okapi

    start = time.perf_counter()
    model = BM25Okapi([tokenize(f"{r['title']}\n{r['text']}") for r in rows], k1=1.2, b=0.75)
    build = time.perf_counter() - start

    def search(query: str) -> list[str]:
        scores = model.get_scores(list(dict.fromkeys(tokenize(query))))
        top = np.argsort(-scores, kind="stable")[:10]
        return [rows[int(i)]["id"] for i in top if scores[i] > 0]

    qps = queries_per_second(search, queries)
    return {"build": build, "load": float("nan"), "qps": qps}, [search(q) for q in queries]


def measure_tantivy(rows: Sequence[dict[str, str]], queries: Sequence[str], folder: Path) -> dict[str, float]:
    import tantivy

    builder = tantivy.SchemaBuilder()
    builder.add_text_field("body", stored=False, tokenizer_name="whitespace")
    builder.add_text_field("id", stored=True, tokenizer_name="raw")
    schema = builder.build()
    folder.mkdir()
    start = time.perf_counter()
    writer = tantivy.Index(schema, path=str(folder)).writer(heap_size=256_000_000, num_threads=2)
    for row in rows:
        writer.add_document(tantivy.Document(id=row["id"], body=" ".join(tokenize(f"{row['title']}\n{row['text']}"))))
    writer.commit()
    writer.wait_merging_threads()
    build = time.perf_counter() - start
    start = time.perf_counter()
    index = tantivy.Index.open(str(folder))
    index.reload()
    searcher = index.searcher()
    load = time.perf_counter() - start

    def search(query: str) -> list[str]:
        terms = list(dict.fromkeys(tokenize(query)))
        if not terms:
            return []
        parsed = index.parse_query(" ".join(terms), ["body"])
        return [searcher.doc(address)["id"][0] for _, address in searcher.search(parsed, 10).hits]

    return {"build": build, "load": load, "qps": queries_per_second(search, queries)}


def overlap(a: Sequence[Sequence[str]], b: Sequence[Sequence[str]]) -> float:
    shared = [len(set(x) & set(y)) / max(len(x), 1) for x, y in zip(a, b, strict=True)]
    return float(np.mean(shared))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--passages", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=500, help="queries timed for arpo's backends and tantivy")
    parser.add_argument("--baseline-queries", type=int, default=20, help="queries timed for rank-bm25 (slow)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="arpo-bench-search-"))
    try:
        start = time.perf_counter()
        rows = generate_corpus(args.passages, args.seed)
        corpus = work / "corpus.jsonl"
        corpus.write_text("".join(json.dumps(r) + "\n" for r in rows))
        queries = make_queries(rows, args.queries, args.seed + 1)
        baseline_queries = queries[: args.baseline_queries]
        size = corpus.stat().st_size / 2**20
        print(f"corpus: {len(rows):,} passages, {size:.1f} MiB, made in {time.perf_counter() - start:.1f} s")

        results: dict[str, dict[str, float]] = {}
        results["arpo bm25s (default)"] = measure_arpo(corpus, "bm25s", queries, work / "cache")
        results["arpo sqlite (FTS5)"] = measure_arpo(
            corpus, "sqlite", queries[: max(50, len(queries) // 10)], work / "cache"
        )
        reference = arpo_top10(corpus, baseline_queries, work / "cache")
        overlaps: dict[str, float] = {}
        try:
            results["tantivy"] = measure_tantivy(rows, queries, work / "tantivy")
        except ImportError:
            print("tantivy: not installed, skipped (pip install tantivy to compare)")
        try:
            results["rank-bm25 (baseline)"], baseline_top = measure_rank_bm25(rows, baseline_queries)
            overlaps["rank-bm25 (baseline)"] = overlap(reference, baseline_top)
        except ImportError:
            print("rank-bm25: not installed, its column is skipped (.venv/bin/pip install rank-bm25)")
    finally:
        shutil.rmtree(work, ignore_errors=True)

    base = results.get("rank-bm25 (baseline)", {}).get("qps")
    print(f"\n{'index':24} {'build s':>8} {'load s':>8} {'queries/s':>10} {'× rank-bm25':>12} {'top-10 overlap':>15}")
    for name, r in results.items():
        load = "—" if np.isnan(r["load"]) else f"{r['load']:.3f}"
        ratio = f"{r['qps'] / base:,.0f}×" if base else "—"
        shared = f"{overlaps[name]:.2f}" if name in overlaps else ""
        print(f"{name:24} {r['build']:8.2f} {load:>8} {r['qps']:10,.1f} {ratio:>12} {shared:>15}")
    if base:
        ratio = results["arpo bm25s (default)"]["qps"] / base
        verdict = "met" if ratio >= GOAL else "NOT met"
        print(f"\ngoal ≥ {GOAL:.0f}× rank-bm25's queries/s: {ratio:,.0f}× — {verdict}")


if __name__ == "__main__":
    main()
