"""Robustness: no parser raises on any text, the results keep their invariants, and adversarial
megabyte inputs finish quickly (the parsers are linear; a quadratic one would take minutes here)."""

from __future__ import annotations

import textwrap
import time
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from arpo_core.toolcalls import HermesProtocol, ParsedTurn, TagProtocol, ToolCallParser

FRAGMENTS = [
    "<python>",
    "</python>",
    "<search>",
    "</search>",
    "<calc>",
    "</calc>",
    "<answer>",
    "</answer>",
    "<think>",
    "</think>",
    " <result>\n",
    "\n</result>",
    "<tool_call>",
    "</tool_call>",
    "<",
    "</",
    ">",
    "{",
    "}",
    "[",
    "]",
    '"',
    ":",
    ",",
    '"name"',
    '"arguments"',
    '"search"',
    '"python"',
    '"query"',
    '"{}"',
    "null",
    "1e999",
    " ",
    "\n",
    "\x00",
    "é",
    "🚀",
    "\ud800",
]
STOPS = [None, "", "</python>", "</search>", "</calc>", "</answer>", "</tool_call>", "<|im_end|>"]

any_text = st.text(alphabet=st.characters(exclude_categories=()), max_size=300)
fragment_text = st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=4)), max_size=40).map("".join)
texts = st.one_of(any_text, fragment_text)
stops = st.sampled_from(STOPS)

TAGS = TagProtocol(max_argument_chars=60)
HERMES = HermesProtocol(["search", "python"], max_argument_chars=200, max_calls_per_turn=4)
HERMES_OPEN = HermesProtocol(stop_on_call_end=True)
FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def check_common(turn: ParsedTurn, text: str) -> None:
    assert isinstance(turn, ParsedTurn)
    for error in turn.errors:
        assert error.message
        assert error.message.endswith(".")
        assert "\n" not in error.message
    for call in turn.calls:
        assert isinstance(call.name, str)
        assert call.name
        assert isinstance(call.arguments, dict)
    if not turn.has_calls:
        assert turn.content == text
        assert turn.trailing == ""
    assert turn.has_answer == ("<answer>" in text and "</answer>" in text[text.find("<answer>") :])


@FUZZ
@given(texts, stops)
def test_tag_parser_never_raises_and_keeps_its_invariants(text: str, stop: str | None) -> None:
    turn = TAGS.parse(text, stop=stop)
    check_common(turn, text)
    assert len(turn.calls) + len(turn.errors) <= 1
    if turn.has_calls:
        rebuilt = turn.content + (turn.calls or turn.errors)[0].raw + turn.trailing
        assert rebuilt == text or (stop is not None and rebuilt == text + stop)
        assert turn.unclosed is None
    for call in turn.calls:
        assert call.name in TAGS.tools
        (value,) = call.arguments.values()
        assert list(call.arguments) == [TAGS.tools[call.name]]
        assert value
        assert value == value.strip()
        assert len(value) <= TAGS.max_argument_chars
        assert call.raw.startswith(f"<{call.name}>")
        assert call.raw.endswith(f"</{call.name}>")


@FUZZ
@given(texts, stops)
def test_hermes_parser_never_raises_and_keeps_its_invariants(text: str, stop: str | None) -> None:
    for parser in (HERMES, HERMES_OPEN):
        turn = parser.parse(text, stop=stop)
        check_common(turn, text)
        assert text.startswith(turn.content)
        assert text.endswith(turn.trailing)
        assert len(turn.calls) + len(turn.errors) <= parser.max_calls_per_turn + 1
        for call in turn.calls:
            assert parser.tools is None or call.name in parser.tools
            assert call.raw.startswith("<tool_call>")
            assert call.raw in text or call.raw.removesuffix("</tool_call>") in text


@FUZZ
@given(st.text(max_size=200))
def test_tag_call_round_trip(body: str) -> None:
    """Whatever a tool body holds (besides the tags that end it), it reaches the tool dedented and stripped."""
    markers = ("<python>", "</python>", "</result>")
    while any(marker in body for marker in markers):
        for marker in markers:
            body = body.replace(marker, "")
    turn = TagProtocol().parse(f"reasoning <python>{body}</python>", stop="</python>")
    if not body.strip():
        assert turn.errors[0].message.startswith("The <python> call is empty")
        return
    assert turn.errors == ()
    assert turn.calls[0].arguments == {"code": textwrap.dedent(body).strip()}
    assert turn.content == "reasoning "


# ---------------------------------------------------------------- adversarial megabyte inputs

MB = 1_000_000
ADVERSARIAL: dict[str, Callable[[], str]] = {
    "many python openings": lambda: "<python>" * (MB // 8),
    "many python closings": lambda: "</python>" * (MB // 9),
    "nested openings of two tools": lambda: "<search><python>" * (MB // 16) + "</python>",
    "open-close pairs": lambda: "<python></python>" * (MB // 17),
    "many tool_call openings": lambda: "<tool_call>" * (MB // 11),
    "many tool_call closings": lambda: "</tool_call>" * (MB // 12),
    "empty tool_call blocks": lambda: "<tool_call></tool_call>" * (MB // 23),
    "unclosed tool_call with a long name": lambda: '<tool_call>{"name": "' + "a" * MB,
    "deep JSON": lambda: "<tool_call>" + "[" * MB + "</tool_call>",
    "angle brackets": lambda: "<" * MB,
    "closing-tag starts": lambda: "</" * (MB // 2) + ">",
    "answer openings": lambda: "<answer>" * (MB // 8),
    "unknown tool at the end": lambda: "<calc>" + "x" * MB + "</calc>",
    "NUL bytes": lambda: "\x00" * MB,
    "results": lambda: " <result>\n\n</result>" * (MB // 20) + "</python>",
}


@pytest.mark.parametrize("name", list(ADVERSARIAL))
def test_adversarial_megabyte_input_parses_quickly(name: str) -> None:
    text = ADVERSARIAL[name]()
    parsers: list[ToolCallParser] = [
        TagProtocol(),
        HermesProtocol(),
        HermesProtocol(stop_on_call_end=True, max_calls_per_turn=10**9),  # no cap: tests the scan itself
        HermesProtocol(max_argument_chars=2 * MB),  # lets json.loads see the whole deep block
    ]
    started = time.perf_counter()
    for parser in parsers:
        for stop in (None, "</python>", "</tool_call>", "</calc>"):
            turn = parser.parse(text, stop=stop)
            assert isinstance(turn, ParsedTurn)
    # Generous: the whole loop takes well under a second on a laptop; quadratic scans would take minutes.
    assert time.perf_counter() - started < 10
