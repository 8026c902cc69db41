"""The tag protocol's format check on hand-written good and bad responses."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from arpo_core.algo.rewards.format_check import FormatCheck, check_format

GOOD = (
    "<think>I need the director's birthplace.</think>\n"
    "<search>director of The Half-Way Girl</search> <result>\n"
    "John Francis Dillon (born in New York City) directed it.\n</result>\n"
    "<think>Check the arithmetic too.</think>\n"
    "<python>print(1 + 1)</python> <result>\n2\n</result>\n"
    "<think>Done.</think>\n"
    "<answer>He was born in \\boxed{New York City}.</answer>"
)


def test_good_response_passes_and_lists_its_calls() -> None:
    verdict = check_format(GOOD)
    assert verdict == FormatCheck(True, None, ("search", "python"))


@pytest.mark.parametrize(
    "response",
    [
        "<think>easy</think><answer>\\boxed{1}</answer>",  # no tool at all
        "<think>a <search>q</search><result>r</result> b</think><answer>\\boxed{1}</answer>",  # call inside think
        "<think>a</think> text between tags <answer>so \\fbox{1}</answer> trailing text",
        "<think>a</think><search></search><result></result><answer>\\boxed{x}</answer>",  # empty call
    ],
)
def test_other_valid_shapes(response: str) -> None:
    verdict = check_format(response)
    assert verdict.ok, verdict.reason


@pytest.mark.parametrize(
    ("response", "reason_part"),
    [
        ("<answer>\\boxed{1}</answer>", "no <think>"),
        ("</think><think><answer>\\boxed{1}</answer>", "</think> comes before its <think>"),
        ("<think><think>a</think></think><answer>\\boxed{1}</answer>", "opens inside another think block"),
        ("<think>a</think><think>b<answer>\\boxed{1}</answer>", "never closed"),
        ("<think>a</think>", "found 0 <answer> and 0 </answer>"),
        ("<think>a</think><answer>\\boxed{1}</answer><answer>\\boxed{2}</answer>", "exactly one"),
        ("<think>a</think><answer>\\boxed{1}", "exactly one"),
        ("<think>a</think></answer>\\boxed{1}<answer>", "</answer> comes before <answer>"),
        ("<think>a</think><answer>1</answer>", "no well-formed"),
        ("<think>a</think><answer>\\boxed{1</answer>", "no well-formed"),
        ("<think>a</think><answer>\\boxed 1</answer>", "no well-formed"),
        ("<think>a</think><search>q</search><think>b</think><answer>\\boxed{1}</answer>", "not followed by"),
        # the reference lets these two calls share one result
        (
            "<think>a</think><search>q</search><python>p</python><result>r</result><answer>\\boxed{1}</answer>",
            "not followed by",
        ),
        ("<think>a</think><result>made up</result><answer>\\boxed{1}</answer>", "does not follow a tool call"),
        ("<think>a</think><search>q<answer>\\boxed{1}</answer>", "never closed"),
        ("<think>a</think><search>q</search><result>r<answer>\\boxed{1}</answer>", "never closed"),
        ("<think>a</think></python><answer>\\boxed{1}</answer>", "closes no open tag"),
        ("<think>a</think><answer>\\boxed{1}</answer><python>x = 1</python>", "has no <result> block after it"),
    ],
)
def test_bad_responses_fail_with_a_reason(response: str, reason_part: str) -> None:
    verdict = check_format(response)
    assert not verdict.ok
    assert verdict.reason is not None and reason_part in verdict.reason


def test_think_block_can_be_optional() -> None:
    assert check_format("<answer>\\boxed{1}</answer>", require_think=False).ok
    # balance is still required
    assert not check_format("</think><answer>\\boxed{1}</answer>", require_think=False).ok


def test_tool_results_and_calls_are_opaque() -> None:
    # tags quoted in a search result or in code must not change the verdict
    response = (
        "<think>look it up</think>"
        "<search>what does <answer> mean</search>"
        "<result>A page: <answer>\\boxed{wrong}</answer> </think> <python></result>"
        "<python>print('</think><answer>')</python><result></search></result>"
        "<think>ok</think><answer>\\boxed{right}</answer>"
    )
    assert check_format(response) == FormatCheck(True, None, ("search", "python"))


def test_custom_tool_tags() -> None:
    response = "<think>a</think><browse>https://x</browse><result>page</result><answer>\\boxed{1}</answer>"
    assert check_format(response, ("search", "python", "browse")).tool_calls == ("browse",)
    # for the default tools <browse> is plain text, so its result block answers no call
    verdict = check_format(response)
    assert not verdict.ok and verdict.reason is not None and "does not follow a tool call" in verdict.reason
    unanswered = "<think>a</think><browse>https://x</browse><answer>\\boxed{1}</answer>"
    assert not check_format(unanswered, ("browse",)).ok


@pytest.mark.parametrize("tag", ["result", "think", "bad tag", "", "1st", "a>b"])
def test_unusable_tool_tags_are_rejected(tag: str) -> None:
    with pytest.raises(ValueError, match="not usable"):
        check_format("", (tag,))


def test_calls_are_reported_up_to_the_first_problem() -> None:
    response = "<think>a</think><search>q</search><result>r</result><python>p</python><think>"
    verdict = check_format(response)
    assert not verdict.ok
    assert verdict.tool_calls == ("search",)


def test_format_check_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        check_format(GOOD).ok = False  # type: ignore[misc]


_TOKENS = [
    "<think>", "</think>", "<search>", "</search>", "<python>", "</python>", "<result>", "</result>",
    "<answer>", "</answer>", "\\boxed{1}", "\\boxed{", "}", "text ", "<", ">",
]  # fmt: skip


@given(st.lists(st.sampled_from(_TOKENS), max_size=30).map("".join))
def test_never_raises_on_tag_soup(response: str) -> None:
    verdict = check_format(response)
    assert verdict.ok == (verdict.reason is None)


@given(st.text())
def test_never_raises_on_any_text(response: str) -> None:
    verdict = check_format(response)
    assert verdict.ok == (verdict.reason is None)


_FREE_TEXT = st.text(alphabet=st.characters(exclude_characters="<>", exclude_categories=["Cs"]), max_size=20)
_BOX_TEXT = st.text(alphabet=st.characters(exclude_characters="<>{}\\", exclude_categories=["Cs"]), max_size=10)


@st.composite
def _valid_response(draw: st.DrawFn) -> tuple[str, tuple[str, ...]]:
    parts: list[str] = []
    calls: list[str] = []
    for kind in draw(st.lists(st.sampled_from(["think", "search", "python"]), max_size=6)):
        if kind == "think":
            parts.append(f"<think>{draw(_FREE_TEXT)}</think>")
        else:
            parts.append(f"<{kind}>{draw(_FREE_TEXT)}</{kind}> <result>\n{draw(_FREE_TEXT)}\n</result>")
            calls.append(kind)
    parts.append(f"<think>{draw(_FREE_TEXT)}</think>")
    parts.append(f"<answer>{draw(_FREE_TEXT)} \\boxed{{{draw(_BOX_TEXT)}}}</answer>")
    return draw(_FREE_TEXT).join(parts), tuple(calls)


@given(_valid_response())
def test_generated_protocol_responses_pass(case: tuple[str, tuple[str, ...]]) -> None:
    response, calls = case
    verdict = check_format(response)
    assert verdict.ok, verdict.reason
    assert verdict.tool_calls == calls
