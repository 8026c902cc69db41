"""ToolCall ↔ OpenAI chat `tool_calls` entries."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from arpo_core.toolcalls import (
    HermesProtocol,
    ToolCall,
    from_openai_tool_calls,
    to_openai_tool_calls,
    tool_result_message,
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(), children, max_size=3),
    max_leaves=10,
)
arguments = st.dictionaries(st.text(), json_values, max_size=4)
names = st.text(min_size=1).filter(str.strip)
call_ids = st.none() | st.text(min_size=1, max_size=20)


def test_to_openai_shape() -> None:
    calls = [ToolCall("search", {"query": "Zürich"}, "raw", "call_a"), ToolCall("python", {"code": "1"}, "raw")]
    assert to_openai_tool_calls(calls) == [
        {"id": "call_a", "type": "function", "function": {"name": "search", "arguments": '{"query": "Zürich"}'}},
        {"id": "call_1", "type": "function", "function": {"name": "python", "arguments": '{"code": "1"}'}},
    ]


def test_id_prefix_makes_ids_unique_per_turn() -> None:
    entries = to_openai_tool_calls([ToolCall("a", {}, ""), ToolCall("b", {}, "")], id_prefix="call_3_")
    assert [entry["id"] for entry in entries] == ["call_3_0", "call_3_1"]


def test_tool_result_message() -> None:
    assert tool_result_message("call_1", "42") == {"role": "tool", "tool_call_id": "call_1", "content": "42"}


def test_from_openai_reads_calls_content_and_answer() -> None:
    tool_calls = [{"id": "c1", "type": "function", "function": {"name": "search", "arguments": '{"query": "x"}'}}]
    turn = from_openai_tool_calls(tool_calls, content="Let me check. <answer>1</answer>")
    assert turn.calls == (ToolCall("search", {"query": "x"}, json.dumps(tool_calls[0]), "c1"),)
    assert turn.content == "Let me check. <answer>1</answer>"
    assert turn.has_answer


@pytest.mark.parametrize("tool_calls", [None, []])
def test_from_openai_without_calls(tool_calls: list[dict[str, Any]] | None) -> None:
    turn = from_openai_tool_calls(tool_calls, content=None)
    assert turn.calls == ()
    assert turn.errors == ()
    assert turn.content == ""


def test_arguments_already_decoded_are_accepted() -> None:
    turn = from_openai_tool_calls([{"id": "c", "function": {"name": "search", "arguments": {"query": "x"}}}])
    assert turn.calls[0].arguments == {"query": "x"}


@pytest.mark.parametrize(
    ("entry", "fragment"),
    [
        ("not an object", "must be an object, not a string"),
        ({"id": "c", "type": "function"}, 'has no "function" object'),
        ({"function": {"arguments": "{}"}}, 'has no "name" string'),
        ({"function": {"name": "search", "arguments": '{"query": '}}, "not valid JSON (Expecting value"),
        ({"function": {"name": "search", "arguments": "[]"}}, "must be a JSON object, not an array"),
        ({"function": {"name": "calculator", "arguments": "{}"}}, "the available tools are python, search"),
        ({"function": {"name": "search", "arguments": "x" * 101}}, "101 characters long, over the limit of 100"),
    ],
)
def test_bad_entries_become_errors_not_exceptions(entry: Any, fragment: str) -> None:
    turn = from_openai_tool_calls([entry], tools={"search", "python"}, max_argument_chars=100)
    assert turn.calls == ()
    assert len(turn.errors) == 1
    assert fragment in turn.errors[0].message


def test_an_entry_that_json_cannot_encode_still_gets_a_raw() -> None:
    entry: dict[str, Any] = {"function": {"name": "search", "arguments": "{}"}}
    entry["self"] = entry  # circular: json.dumps fails
    turn = from_openai_tool_calls([entry])
    assert turn.calls[0].name == "search"
    assert turn.calls[0].raw


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(names, arguments, call_ids), max_size=5))
def test_round_trip_through_openai_dicts(specs: list[tuple[str, dict[str, Any], str | None]]) -> None:
    calls = [ToolCall(name, args, "raw", call_id) for name, args, call_id in specs]
    entries = to_openai_tool_calls(calls)
    back = from_openai_tool_calls(json.loads(json.dumps(entries)))
    assert back.errors == ()
    assert [(c.name, dict(c.arguments)) for c in back.calls] == [(name, args) for name, args, _ in specs]
    assert [c.call_id for c in back.calls] == [entry["id"] for entry in entries]
    assert to_openai_tool_calls(back.calls) == entries


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(names, arguments), min_size=1, max_size=5), st.booleans())
def test_hermes_text_round_trip(specs: list[tuple[str, dict[str, Any]]], as_string: bool) -> None:
    """Calls written as hermes blocks parse back to the same calls, and convert to OpenAI and back.

    Markup inside a JSON string splits the block (as in vLLM's hermes parser), so it is left out here."""
    assume("tool_call>" not in json.dumps(specs))
    blocks = []
    for name, args in specs:
        encoded_arguments: object = json.dumps(args) if as_string else args
        blocks.append(f"<tool_call>\n{json.dumps({'name': name, 'arguments': encoded_arguments})}\n</tool_call>")
    turn = HermesProtocol().parse("Calling tools.\n" + "\n".join(blocks))
    assert turn.errors == ()
    assert [(c.name, dict(c.arguments)) for c in turn.calls] == specs
    assert [call.raw for call in turn.calls] == blocks
    back = from_openai_tool_calls(to_openai_tool_calls(turn.calls))
    assert [(c.name, dict(c.arguments)) for c in back.calls] == specs
