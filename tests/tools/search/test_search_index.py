"""The BM25 index: scores checked by hand and against a second implementation, the on-disk cache, unicode."""

from __future__ import annotations

import json
import math
import shutil
import unicodedata
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from arpo_tools.search.corpus import DEFAULT_CORPUS, CorpusError, load_corpus
from arpo_tools.search.index import MANIFEST, IndexSettings, SearchIndex
from arpo_tools.search.tokens import _TOKEN, tokenize

BACKENDS = ["bm25s", "sqlite"]


def write_corpus(path: Path, rows: list[dict[str, str]]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def fruit(tmp_path: Path) -> Path:
    return write_corpus(
        tmp_path / "fruit.jsonl",
        [
            {"id": "d0", "title": "", "text": "apple apple banana"},
            {"id": "d1", "title": "", "text": "apple cherry"},
            {"id": "d2", "title": "", "text": "banana cherry cherry date"},
        ],
    )


# Hand computation, Lucene BM25 (bm25s), k1 = 1.2, b = 0.75. N = 3, |d0| = 3, |d1| = 2, |d2| = 4, avgdl = 3.
#   idf(apple) = idf(banana) = idf(cherry) = ln(1 + (3 − 2 + 0.5)/(2 + 0.5)) = ln 1.6 = 0.470004
#   idf(date)                              = ln(1 + (3 − 1 + 0.5)/(1 + 0.5)) = ln(8/3) = 0.980829
#   length norm k1·(1 − b + b·|d|/avgdl):  d0: 1.2   d1: 0.9   d2: 1.5
#   "apple":        d0 = 0.470004 · 2/(2 + 1.2) = 0.293752      d1 = 0.470004 · 1/(1 + 0.9) = 0.247370
#   "cherry date":  d2 = 0.470004 · 2/(2 + 1.5) + 0.980829 · 1/(1 + 1.5) = 0.268574 + 0.392332 = 0.660905
#                   d1 = 0.470004 · 1/1.9 = 0.247370
#   "banana apple": d0 = 0.470004 · 1/2.2 + 0.293752 = 0.507390   d1 = 0.247370   d2 = 0.470004 · 1/2.5 = 0.188001
HAND = {
    "apple": [("d0", 0.293752), ("d1", 0.247370)],
    "cherry date": [("d2", 0.660905), ("d1", 0.247370)],
    "banana apple": [("d0", 0.507390), ("d1", 0.247370), ("d2", 0.188001)],
}


@pytest.mark.parametrize(("query", "expected"), list(HAND.items()))
def test_bm25s_scores_match_the_hand_computation(fruit: Path, tmp_path: Path, query: str, expected: list) -> None:  # type: ignore[type-arg]
    with SearchIndex.open(fruit, IndexSettings(), tmp_path / "cache") as index:
        hits = index.search(query, 10)
    assert [h.id for h in hits] == [pid for pid, _ in expected]
    for hit, (_, score) in zip(hits, expected, strict=True):
        assert hit.score == pytest.approx(score, abs=2e-6)


def test_sqlite_scores_match_fts5s_formula(fruit: Path, tmp_path: Path) -> None:
    # FTS5: idf = ln((N − n + 0.5)/(n + 0.5)) floored at 1e-6, and a (k1 + 1) = 2.2 factor on each term.
    #   "cherry date": d2 = ln(2.5/1.5) · 1·2.2/(1 + 1.5) + 1e-6 · 2·2.2/(2 + 1.5) = 0.449528 (+ 1.3e-6)
    #                  d1 = 1e-6 · 2.2/(1 + 0.9) = 1.16e-6   — same order as bm25s, different idf
    with SearchIndex.open(fruit, IndexSettings(backend="sqlite"), tmp_path / "cache") as index:
        hits = index.search("cherry date", 10)
    assert [h.id for h in hits] == ["d2", "d1"]
    assert hits[0].score == pytest.approx(0.449528 + 1.257e-6, rel=1e-5)
    assert hits[1].score == pytest.approx(1.158e-6, rel=1e-3)


def lucene_bm25(docs: list[list[str]], terms: list[str], k1: float = 1.2, b: float = 0.75) -> list[float]:
    """A second implementation, plain Python, to check bm25s against on a real corpus."""
    n = len(docs)
    avgdl = sum(map(len, docs)) / n
    df = Counter(t for d in docs for t in set(d))
    scores = []
    for d in docs:
        tf = Counter(d)
        norm = k1 * (1 - b + b * len(d) / avgdl)
        scores.append(
            sum(math.log(1 + (n - df[t] + 0.5) / (df[t] + 0.5)) * tf[t] / (tf[t] + norm) for t in terms if tf[t])
        )
    return scores


def test_bm25s_agrees_with_a_plain_python_bm25_on_the_world_corpus(tmp_path: Path) -> None:
    passages = load_corpus(DEFAULT_CORPUS)
    docs = [tokenize(f"{p.title}\n{p.text}") for p in passages]
    queries = ["Hapovan capital", "steel company founded 1874", "river kilometers long sea", "mayor population"]
    with SearchIndex.open(None, IndexSettings(), tmp_path / "cache") as index:
        for query in queries:
            terms = list(dict.fromkeys(tokenize(query)))
            reference = lucene_bm25(docs, terms)
            expected = sorted((i for i, s in enumerate(reference) if s > 0), key=lambda i: (-reference[i], i))[:10]
            hits = index.search(query, 10)
            assert [h.id for h in hits] == [passages[i].id for i in expected], query
            for hit, i in zip(hits, expected, strict=True):
                assert hit.score == pytest.approx(reference[i], rel=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_ties_break_by_corpus_order_and_k_bounds(tmp_path: Path, backend: str) -> None:
    rows = [{"id": f"t{i}", "title": "", "text": "granite quarry stone"} for i in range(6)]
    corpus = write_corpus(tmp_path / "ties.jsonl", [*rows, {"id": "other", "title": "", "text": "unrelated text"}])
    with SearchIndex.open(corpus, IndexSettings(backend=backend), tmp_path / "cache") as index:  # type: ignore[arg-type]
        assert [h.id for h in index.search("granite quarry", 4)] == ["t0", "t1", "t2", "t3"]
        assert len(index.search("granite", 100)) == 6  # k above the corpus size: every match, no error
        assert index.search("granite", 0) == []


@pytest.mark.parametrize("backend", BACKENDS)
def test_queries_with_no_searchable_words_find_nothing(fruit: Path, tmp_path: Path, backend: str) -> None:
    with SearchIndex.open(fruit, IndexSettings(backend=backend), tmp_path / "cache") as index:  # type: ignore[arg-type]
        assert index.search("", 5) == []
        assert index.search("  ?!  ", 5) == []
        assert index.search("what is the", 5) == []  # stop words only
        assert index.search("zeppelin", 5) == []  # not in the corpus
        assert index.search('"apple" OR NEAR(banana) *', 5)  # FTS5 syntax in a query is just words


@pytest.mark.parametrize("backend", BACKENDS)
def test_unicode_passages_and_queries(tmp_path: Path, backend: str) -> None:
    corpus = write_corpus(
        tmp_path / "unicode.jsonl",
        [
            {"id": "zh", "title": "東京", "text": "東京は日本の首都です。"},
            {"id": "de", "title": "Zürich", "text": "Zürich liegt an der Limmat; die Straße ist lang."},
            {"id": "el", "title": "Ελλάδα", "text": "Η Αθήνα είναι η πρωτεύουσα της Ελλάδας."},
            {"id": "en", "title": "Emoji", "text": "Rockets 🚀 and café culture."},
        ],
    )
    with SearchIndex.open(corpus, IndexSettings(backend=backend), tmp_path / "cache") as index:  # type: ignore[arg-type]
        assert index.search("首都", 5)[0].id == "zh"  # CJK: one token per character
        assert index.search("ZÜRICH strasse", 5)[0].id == "de"  # case folding: ß → ss, Ü → ü
        assert index.search("ΑΘΉΝΑ", 5)[0].id == "el"
        assert index.search("CAFÉ 🚀", 5)[0].id == "en"
        assert index.search("東京", 5)[0].title == "東京"


@given(st.text(alphabet=st.characters(max_codepoint=127), max_size=80))
def test_the_ascii_fast_path_tokenizes_like_the_general_one(text: str) -> None:
    general = _TOKEN.findall(unicodedata.normalize("NFKC", text).casefold())
    assert tokenize(text, stopwords=False) == general


def test_tokenizer() -> None:
    assert tokenize("Öl-Straße 12, the ÉCOLE") == ["öl", "strasse", "12", "école"]
    assert tokenize("The cat", stopwords=False) == ["the", "cat"]
    assert tokenize("東京大学") == ["東", "京", "大", "学"]
    assert tokenize("snake_case x²") == ["snake", "case", "x2"]


def test_built_once_then_loaded_from_the_cache(fruit: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    with SearchIndex.open(fruit, IndexSettings(), cache) as first:
        assert first.built
        folder = first.folder
    manifest = json.loads((folder / MANIFEST).read_text())
    assert manifest["passages"] == 3 and manifest["corpus"] == str(fruit.resolve())
    with SearchIndex.open(fruit, IndexSettings(), cache) as second:
        assert not second.built and second.folder == folder
        assert second.search("apple", 1)[0].id == "d0"
    assert [p.name for p in cache.iterdir()] == [folder.name]  # no temporary folder left behind


def test_a_changed_corpus_is_rebuilt_and_the_old_cache_removed(fruit: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    with SearchIndex.open(fruit, IndexSettings(), cache) as old:
        old_folder = old.folder
    rows = [json.loads(line) for line in fruit.read_text().splitlines()]
    rows[1]["text"] = "apple apple apple apple elderberry"
    write_corpus(fruit, rows)
    with SearchIndex.open(fruit, IndexSettings(), cache) as new:
        assert new.built and new.folder != old_folder
        assert new.search("elderberry", 5)[0].id == "d1"
        assert new.search("apple", 1)[0].id == "d1"
    assert not old_folder.exists()


def test_other_settings_get_their_own_cache(fruit: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    folders = set()
    for settings in (IndexSettings(), IndexSettings(k1=0.9), IndexSettings(stopwords=False), IndexSettings("sqlite")):
        with SearchIndex.open(fruit, settings, cache) as index:
            assert index.built
            folders.add(index.folder)
    assert len(folders) == 4
    with SearchIndex.open(fruit, IndexSettings(stopwords=False), cache) as index:
        assert not index.built
        assert index.search("the", 5) == []  # no "the" in the corpus, but the word is searchable now


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_damaged_cache_is_rebuilt(fruit: Path, tmp_path: Path, backend: str) -> None:
    cache = tmp_path / "cache"
    settings = IndexSettings(backend=backend)  # type: ignore[arg-type]
    with SearchIndex.open(fruit, settings, cache) as index:
        folder = index.folder
    for path in folder.iterdir():
        if path.name != MANIFEST:
            shutil.rmtree(path) if path.is_dir() else path.write_bytes(b"garbage")
    with SearchIndex.open(fruit, settings, cache) as index:
        assert index.built
        assert index.search("apple", 1)[0].id == "d0"


def test_two_builders_of_one_key_share_the_first_copy(fruit: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    with SearchIndex.open(fruit, IndexSettings(), cache) as first:
        folder, manifest = first.folder, json.loads((first.folder / MANIFEST).read_text())
    # A second process that hashed the same corpus before the first finished builds too, then finds the folder.
    late = SearchIndex._build(fruit, manifest["corpus_sha256"], manifest["key"], folder, IndexSettings())
    with late:
        assert late.folder == folder and late.search("date", 1)[0].id == "d2"
    assert [p.name for p in cache.iterdir()] == [folder.name]


def test_bad_corpus_fails_before_any_cache_is_written(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "title": "A", "text": "fine"}\n{"id": "b", "title": "B"}\n')
    with pytest.raises(CorpusError, match=r"bad\.jsonl, line 2: the field 'text' is missing"):
        SearchIndex.open(bad, IndexSettings(), tmp_path / "cache")
    assert not (tmp_path / "cache").exists()
    with pytest.raises(CorpusError, match="does not exist"):
        SearchIndex.open(tmp_path / "absent.jsonl", IndexSettings(), tmp_path / "cache")
    only_stopwords = write_corpus(tmp_path / "stop.jsonl", [{"id": "a", "title": "The", "text": "and of the"}])
    with pytest.raises(CorpusError, match="no searchable words"):
        SearchIndex.open(only_stopwords, IndexSettings(), tmp_path / "cache")


def test_an_unwritable_cache_is_one_clear_error(fruit: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(OSError, match=r"cannot write the search index cache in .*file/x .*; point \$ARPO_CACHE_DIR"):
        SearchIndex.open(fruit, IndexSettings(), blocker / "x")


def test_cache_dir_comes_from_the_environment(fruit: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ARPO_CACHE_DIR", str(tmp_path / "env-cache"))
    with SearchIndex.open(fruit) as index:
        assert index.folder.parent == tmp_path / "env-cache" / "search"
