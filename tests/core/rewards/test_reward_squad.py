"""SQuAD normalisation, exact match and token F1; expected numbers are worked out by hand in the comments."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from arpo_core.algo.rewards.squad import exact_match, f1_score, normalize_answer


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The Cat, sat!", "cat sat"),
        ("An  apple a\tday", "apple day"),
        ("theatre another", "theatre another"),  # articles only as whole words
        ("Washington, D.C.", "washington dc"),
        ("Zürich", "zürich"),
        ("1.95 m", "195 m"),  # punctuation goes, digits stay
        ("   ", ""),
    ],
)
def test_normalize_answer(text: str, expected: str) -> None:
    assert normalize_answer(text) == expected


def test_exact_match_uses_normalisation_and_any_gold() -> None:
    assert exact_match("The Eiffel Tower.", "eiffel tower") == 1.0
    assert exact_match("NYC", ["New York City", "NYC"]) == 1.0
    assert exact_match("Eiffel", "Eiffel Tower") == 0.0
    assert exact_match("anything", []) == 0.0


def test_f1_partial_overlap_worked_by_hand() -> None:
    # "the cat sat" -> [cat, sat]; "a cat sat down" -> [cat, sat, down]; common = 2
    # precision = 2/2 = 1, recall = 2/3, F1 = 2·1·(2/3) / (1 + 2/3) = (4/3) / (5/3) = 0.8
    assert f1_score("the cat sat", "a cat sat down") == pytest.approx(0.8)


def test_f1_counts_repeated_tokens_once_per_match() -> None:
    # [cat, cat, cat] vs [cat]: multiset intersection has 1 token
    # precision = 1/3, recall = 1/1, F1 = 2·(1/3)·1 / (4/3) = 0.5
    assert f1_score("cat cat cat", "cat") == pytest.approx(0.5)


def test_f1_is_the_max_over_gold_answers() -> None:
    # vs "New York": [new, york, city] vs [new, york]: precision 2/3, recall 1, F1 = (4/3)/(5/3) = 0.8
    # vs "New York City": 1.0; the maximum wins
    golds = ["the five boroughs", "New York", "New York City"]
    assert f1_score("New York City", golds[:2]) == pytest.approx(0.8)
    assert f1_score("New York City", golds) == 1.0
    assert f1_score("anything", []) == 0.0


def test_f1_yes_no_answers_get_no_partial_credit() -> None:
    # without the HotpotQA rule, "no" vs "no way" would be precision 1, recall 1/2, F1 = 2/3
    assert f1_score("no", "no way") == 0.0
    assert f1_score("yes sir", "yes") == 0.0
    assert f1_score("Yes.", "yes") == 1.0


def test_f1_of_two_empty_normalisations_agrees_with_exact_match() -> None:
    # "the" and "a" both normalise to "": EM says equal, so F1 must say 1 too (SQuAD v2 rule)
    assert exact_match("the", "a") == 1.0
    assert f1_score("the", "a") == 1.0
    assert f1_score("the", "cat") == 0.0


@given(st.text(), st.text())
def test_f1_and_em_are_bounded_and_consistent(prediction: str, gold: str) -> None:
    f1 = f1_score(prediction, gold)
    em = exact_match(prediction, gold)
    assert 0.0 <= f1 <= 1.0
    assert em in (0.0, 1.0)
    if em == 1.0:
        assert f1 == 1.0


@given(st.text(), st.text())
def test_f1_is_symmetric_for_one_gold(a: str, b: str) -> None:
    assert f1_score(a, b) == pytest.approx(f1_score(b, a))


@given(st.text(), st.lists(st.text(), min_size=1, max_size=4))
def test_f1_of_a_list_is_the_max_of_singles(prediction: str, golds: list[str]) -> None:
    assert f1_score(prediction, golds) == max(f1_score(prediction, gold) for gold in golds)
    assert exact_match(prediction, golds) == max(exact_match(prediction, gold) for gold in golds)


@given(st.text(alphabet=st.characters(exclude_categories=["Cs"])))
def test_prediction_equal_to_gold_scores_one(text: str) -> None:
    assert exact_match(text, text) == 1.0
    assert f1_score(text, text) == 1.0
