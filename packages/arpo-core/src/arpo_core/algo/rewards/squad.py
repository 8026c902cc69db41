"""SQuAD-style answer normalisation, exact match and token-level F1 (the QA half of ARPO's reward, spec §5).

Normalisation (SQuAD v1.1 official script)::

    normalize(s) = collapse_whitespace(remove_articles(remove_punctuation(lower(s))))

where punctuation is ASCII ``string.punctuation`` and the articles are the whole words ``a``, ``an``, ``the``.
With ``P``/``G`` the whitespace tokens of the normalised prediction and gold and ``c = |P ∩ G|`` (multiset
intersection)::

    EM = [normalize(pred) == normalize(gold)]
    F1 = 2·prec·rec / (prec + rec),   prec = c / |P|,   rec = c / |G|   (F1 = 0 when c = 0)

Both are the maximum over the accepted gold answers (a single string is one gold answer).

Kept from the reference (``get_f1_score`` of the ARPO / Tool-Star verl fork, itself HotpotQA's official F1):
when either normalised side is ``yes``, ``no`` or ``noanswer`` and the two sides differ, F1 against that gold
is 0. Without this, the prediction ``"no"`` would get partial credit against a gold like ``"no way"``.

Deviation from the reference: when *both* sides normalise to no tokens at all (e.g. prediction ``"the"``
against gold ``"a"``), F1 is 1, as in SQuAD v2's official script, so that EM = 1 always implies F1 = 1. The
reference returns 0 there (its ``num_same == 0`` branch), which makes EM and F1 disagree on the same pair. With
real gold answers (never empty after normalisation) the two rules give the same numbers.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence

__all__ = ["exact_match", "f1_score", "normalize_answer"]

_PUNCTUATION = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_YES_NO = frozenset({"yes", "no", "noanswer"})


def normalize_answer(text: str) -> str:
    """SQuAD normalisation: lower-case, drop ASCII punctuation, drop articles, collapse whitespace."""
    lowered = text.lower()
    no_punctuation = "".join(ch for ch in lowered if ch not in _PUNCTUATION)
    no_articles = _ARTICLES.sub(" ", no_punctuation)
    return " ".join(no_articles.split())


def _as_golds(golds: str | Sequence[str]) -> tuple[str, ...]:
    if isinstance(golds, str):
        return (golds,)
    return tuple(golds)


def exact_match(prediction: str, golds: str | Sequence[str]) -> float:
    """1.0 when the normalised prediction equals any normalised gold answer, else 0.0 (0.0 for no golds)."""
    normalized_prediction = normalize_answer(prediction)
    return float(any(normalize_answer(gold) == normalized_prediction for gold in _as_golds(golds)))


def _f1_single(normalized_prediction: str, normalized_gold: str) -> float:
    if normalized_prediction != normalized_gold and (normalized_prediction in _YES_NO or normalized_gold in _YES_NO):
        return 0.0
    prediction_tokens = normalized_prediction.split()
    gold_tokens = normalized_gold.split()
    if not prediction_tokens or not gold_tokens:
        return float(prediction_tokens == gold_tokens)
    num_same = sum((Counter(prediction_tokens) & Counter(gold_tokens)).values())
    if num_same == 0:
        return 0.0
    precision = num_same / len(prediction_tokens)
    recall = num_same / len(gold_tokens)
    return 2.0 * precision * recall / (precision + recall)


def f1_score(prediction: str, golds: str | Sequence[str]) -> float:
    """Token-level F1 in [0, 1] of the prediction against the best-matching gold answer (0.0 for no golds)."""
    normalized_prediction = normalize_answer(prediction)
    return max(
        (_f1_single(normalized_prediction, normalize_answer(gold)) for gold in _as_golds(golds)),
        default=0.0,
    )
