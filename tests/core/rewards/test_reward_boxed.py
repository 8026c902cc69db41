r"""Extraction of the last ``\boxed{…}`` and of the ``<answer>`` block."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from arpo_core.algo.rewards.boxed import contains_braced_box, extract_answer_block, extract_boxed


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (r"so \boxed{42}.", "42"),
        (r"\boxed{\frac{1}{2}}", r"\frac{1}{2}"),
        (r"first \boxed{1} then \boxed{2}", "2"),
        (r"\fbox{x+1}", "x+1"),
        (r"\boxed {7}", "7"),  # LaTeX allows a space before the group
        (r"\boxed{}", ""),
        (r"\boxed 12", "12"),
        (r"$\boxed 12$ and more", "12"),  # one token, not the rest of the sentence
        (r"\boxed 12</answer>", "12"),
        # reference defect: any `\boxed ` with a space wins there, and takes everything up to `$`
        (r"\boxed 5 was wrong, so \boxed{6}", "6"),
        # escaped braces are literal characters, not group braces
        (r"\boxed{\{1, 2\}}", r"\{1, 2\}"),
        (r"\boxed{\left\{ x \right.}", r"\left\{ x \right."),
        (r"\boxed{a \\ {b}}", r"a \\ {b}"),  # `\\` is a line break; the brace after it opens a group
        (r"\boxed{\boxed{3}}", "3"),  # the innermost command is the last one
    ],
)
def test_extract_boxed(text: str, expected: str) -> None:
    assert extract_boxed(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "no box here",
        r"\boxed{12",  # never closed
        r"\boxedx{1}",  # another command
        r"the end \boxed",
        r"\boxed$",
        r"\boxed{1} and a broken \boxed{2",  # the last box decides; no fallback to an earlier one
    ],
)
def test_extract_boxed_gives_none(text: str) -> None:
    assert extract_boxed(text) is None


def test_contains_braced_box_needs_a_well_formed_group() -> None:
    assert contains_braced_box(r"x \boxed{5} y")
    assert contains_braced_box(r"\fbox{5}")
    assert not contains_braced_box(r"\boxed 5")
    assert not contains_braced_box(r"\boxed{5")
    assert not contains_braced_box("5")


def test_extract_answer_block_takes_the_last_block() -> None:
    assert extract_answer_block("<answer>a</answer> <answer>b</answer>") == "b"
    assert extract_answer_block("x <answer> \\boxed{1} </answer> y") == " \\boxed{1} "
    assert extract_answer_block("<answer>never closed") is None
    assert extract_answer_block("</answer> <answer>") is None
    assert extract_answer_block("") is None


@given(st.text())
def test_extraction_never_raises(text: str) -> None:
    extract_boxed(text)
    extract_answer_block(text)
    contains_braced_box(text)


_PLAIN = st.text(alphabet=st.characters(exclude_characters="{}\\", exclude_categories=["Cs"]))


@st.composite
def _balanced(draw: st.DrawFn, depth: int = 0) -> str:
    parts = draw(st.lists(_PLAIN if depth >= 2 else st.one_of(_PLAIN, _braced(depth + 1)), max_size=3))
    return "".join(parts)


@st.composite
def _braced(draw: st.DrawFn, depth: int) -> str:
    return "{" + draw(_balanced(depth)) + "}"


@given(_PLAIN, _balanced(), _PLAIN)
def test_boxed_content_round_trips(prefix: str, content: str, suffix: str) -> None:
    assert extract_boxed(prefix + r"\boxed{" + content + "}" + suffix) == content
