"""The full reward on whole responses in the tag protocol."""

from __future__ import annotations

import dataclasses
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from arpo_core.algo.rewards import (
    RewardConfig,
    RewardFunction,
    RewardResult,
    compute_reward,
    make_reward_function,
)


def response(answer: str, *, search: bool = True, python: bool = True, search_result: str = "a page") -> str:
    parts = ["<think>Plan the lookup.</think>\n"]
    if search:
        parts.append(f"<search>the query</search> <result>\n{search_result}\n</result>\n<think>Read it.</think>\n")
    if python:
        parts.append("<python>print(6 * 7)</python> <result>\n42\n</result>\n<think>Computed.</think>\n")
    parts.append(f"<answer>The final answer is \\[ \\boxed{{{answer}}} \\]</answer>")
    return "".join(parts)


def test_correct_answer_with_both_tools_gets_the_bonus() -> None:
    result = compute_reward(response("New York City"), ["NYC", "New York City"])
    # F1 = 1 against the second gold, plus the 0.1 bonus for search and python
    assert result.score == pytest.approx(1.1)
    assert (result.f1, result.em, result.bonus) == (1.0, 1.0, 0.1)
    assert result.tools_used == frozenset({"search", "python"})
    assert result.format_ok and result.format_reason is None
    assert result.answer == "New York City"
    assert result.math is None


def test_partial_f1_plus_bonus_worked_by_hand() -> None:
    # F1("the cat sat", "a cat sat down") = 0.8 (precision 1, recall 2/3); both tools -> 0.8 + 0.1
    result = compute_reward(response("the cat sat"), "a cat sat down")
    assert result.answer_score == pytest.approx(0.8)
    assert result.score == pytest.approx(0.9)


@pytest.mark.parametrize(("search", "python"), [(True, False), (False, True), (False, False)])
def test_no_bonus_unless_both_tools_were_used(search: bool, python: bool) -> None:
    result = compute_reward(response("Paris", search=search, python=python), "Paris")
    assert result.score == 1.0 and result.bonus == 0.0


def test_wrong_answer_gets_zero_and_no_bonus() -> None:
    result = compute_reward(response("Lyon"), "Paris")
    assert (result.score, result.f1, result.bonus) == (0.0, 0.0, 0.0)
    assert result.format_ok


def test_bad_format_gets_the_penalty() -> None:
    broken = response("Paris").replace("</think>", "", 1)
    result = compute_reward(broken, "Paris")
    assert result.score == -1.0
    assert not result.format_ok and result.format_reason is not None
    assert result.answer is None and result.f1 is None and result.bonus == 0.0


def test_unreadable_last_box_gets_the_penalty() -> None:
    # the block has a good box, but the last box command (which the answer is read from) is malformed
    text = "<think>a</think><answer>\\boxed{Paris} or \\boxed</answer>"
    result = compute_reward(text, "Paris")
    assert result.score == -1.0 and not result.format_ok


def test_a_closing_tag_quoted_in_a_result_is_not_a_tool_call() -> None:
    # the reference looks for the substring "</python>" and would pay the bonus here
    text = response("Paris", python=False, search_result="how to close a tag: </python>")
    result = compute_reward(text, "Paris")
    assert result.tools_used == frozenset({"search"})
    assert result.score == 1.0


def test_exact_match_metric() -> None:
    config = RewardConfig(answer_metric="em")
    assert compute_reward(response("new york city."), "New York City", config).score == pytest.approx(1.1)
    partial = compute_reward(response("New York"), "New York City", config)
    assert partial.score == 0.0 and partial.f1 == pytest.approx(0.8)  # F1 is still reported


def test_math_metric() -> None:
    config = RewardConfig(answer_metric="math")
    result = compute_reward(response("\\frac{1}{2}"), "0.5", config)
    assert result.math is True and result.score == pytest.approx(1.1)
    assert result.f1 == 0.0  # "frac12" and "05" share no token: F1 would have said wrong
    wrong = compute_reward(response("\\frac{1}{3}"), ["0.5", "2"], config)
    assert wrong.math is False and wrong.score == 0.0


def test_custom_penalty_bonus_and_bonus_tools() -> None:
    config = RewardConfig(format_penalty=-0.5, tool_bonus=0.25, bonus_tools=("search",))
    assert compute_reward(response("Paris", python=False), "Paris", config).score == pytest.approx(1.25)
    assert compute_reward("no tags", "Paris", config).score == -0.5
    always = RewardConfig(bonus_tools=())  # no tool required: every positive score gets the bonus
    assert compute_reward(response("Paris", search=False, python=False), "Paris", always).bonus == 0.1


def test_reward_function_from_config() -> None:
    reward: RewardFunction = make_reward_function(RewardConfig(tool_bonus=0.0))
    assert reward(response("Paris"), "Paris").score == 1.0
    assert make_reward_function()(response("Paris"), "Paris").score == pytest.approx(1.1)


def test_result_is_a_frozen_slotted_record_with_json_info() -> None:
    result = compute_reward(response("Paris"), "Paris")
    assert isinstance(result, RewardResult)
    assert not hasattr(result, "__dict__")
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.score = 2.0  # type: ignore[misc]
    info = json.loads(json.dumps(result.to_info()))
    assert info["tools_used"] == ["python", "search"] and info["score"] == pytest.approx(1.1)


def test_empty_gold_list_is_an_error() -> None:
    with pytest.raises(ValueError, match="at least one accepted answer"):
        compute_reward(response("Paris"), [])


@given(st.text(), st.text(min_size=1))
def test_never_raises_and_stays_in_range(text: str, gold: str) -> None:
    result = compute_reward(text, gold)
    assert result.score == -1.0 or 0.0 <= result.score <= 1.1 + 1e-9


@given(st.text(alphabet=st.characters(exclude_characters="{}\\<>", exclude_categories=["Cs"]), min_size=1))
def test_boxing_the_gold_scores_full_marks(gold: str) -> None:
    result = compute_reward(response(gold), gold)
    assert result.format_ok
    assert result.score == pytest.approx(1.1)
