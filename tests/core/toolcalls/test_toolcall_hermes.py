"""HermesProtocol: `<tool_call>{json}</tool_call>` blocks, one case per branch."""

from __future__ import annotations

import json

import pytest

from arpo_core.toolcalls import HermesProtocol, ParsedTurn, ToolCall, ToolCallParser

TOOLS = ("search", "python")


@pytest.fixture
def hermes() -> HermesProtocol:
    return HermesProtocol(TOOLS)


def block(payload: object) -> str:
    return f"<tool_call>{json.dumps(payload)}</tool_call>"


def only_error(turn: ParsedTurn) -> str:
    assert turn.calls == ()
    assert len(turn.errors) == 1
    return turn.errors[0].message


# ---------------------------------------------------------------- construction and formatting


def test_no_stop_sequence_by_default_and_one_when_asked() -> None:
    assert HermesProtocol().stop_sequences == ()
    assert HermesProtocol(stop_on_call_end=True).stop_sequences == ("</tool_call>",)
    assert isinstance(HermesProtocol(), ToolCallParser)


def test_result_is_wrapped_in_tool_response(hermes: HermesProtocol) -> None:
    assert hermes.format_result("sunny") == "<tool_response>\nsunny\n</tool_response>"


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"tools": "search"}, "not the string"),
        ({"tools": ["search", ""]}, "non-empty strings"),
        ({"max_argument_chars": 0}, "max_argument_chars"),
        ({"max_calls_per_turn": 0}, "max_calls_per_turn"),
    ],
)
def test_bad_configuration_is_refused(kwargs: dict[str, object], fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        HermesProtocol(**kwargs)  # type: ignore[arg-type]


def test_properties_and_repr(hermes: HermesProtocol) -> None:
    assert hermes.tools == frozenset(TOOLS)
    assert HermesProtocol().tools is None
    assert hermes.max_calls_per_turn == 32
    assert hermes.max_argument_chars == 32_000
    assert "python" in repr(hermes)


# ---------------------------------------------------------------- well-formed calls


def test_one_call(hermes: HermesProtocol) -> None:
    text = 'I should look. <tool_call>\n{"name": "search", "arguments": {"query": "Paris"}}\n</tool_call>'
    turn = hermes.parse(text)
    assert turn.calls == (ToolCall("search", {"query": "Paris"}, text[len("I should look. ") :]),)
    assert turn.errors == ()
    assert turn.content == "I should look. "
    assert turn.trailing == ""


def test_several_calls_in_one_turn_keep_their_order(hermes: HermesProtocol) -> None:
    text = (
        block({"name": "search", "arguments": {"query": "a"}})
        + "\n"
        + block({"name": "python", "arguments": {"code": "1"}})
        + "\n"
        + block({"name": "search", "arguments": {"query": "b"}})
    )
    turn = hermes.parse(text)
    assert [(call.name, dict(call.arguments)) for call in turn.calls] == [
        ("search", {"query": "a"}),
        ("python", {"code": "1"}),
        ("search", {"query": "b"}),
    ]
    assert "".join(call.raw for call in turn.calls) == text.replace("\n", "")


def test_arguments_as_a_json_string_are_decoded(hermes: HermesProtocol) -> None:
    turn = hermes.parse(block({"name": "python", "arguments": json.dumps({"code": "print('é')"})}))
    assert turn.calls[0].arguments == {"code": "print('é')"}


@pytest.mark.parametrize("arguments", [None, "", "  "])
def test_missing_or_empty_arguments_mean_no_arguments(hermes: HermesProtocol, arguments: object) -> None:
    assert hermes.parse(block({"name": "search", "arguments": arguments})).calls[0].arguments == {}
    assert hermes.parse(block({"name": "search"})).calls[0].arguments == {}


def test_parameters_is_accepted_for_arguments(hermes: HermesProtocol) -> None:
    turn = hermes.parse(block({"name": "search", "parameters": {"query": "x"}}))
    assert turn.calls[0].arguments == {"query": "x"}


def test_openai_wrapper_and_id_are_accepted(hermes: HermesProtocol) -> None:
    payload = {"id": "call_9", "type": "function", "function": {"name": "search", "arguments": '{"query": "x"}'}}
    turn = hermes.parse(block(payload))
    assert turn.calls[0].arguments == {"query": "x"}
    assert turn.calls[0].call_id == "call_9"


def test_id_next_to_name_is_kept(hermes: HermesProtocol) -> None:
    assert hermes.parse(block({"id": "abc", "name": "search"})).calls[0].call_id == "abc"


def test_an_array_of_calls_in_one_block(hermes: HermesProtocol) -> None:
    turn = hermes.parse(block([{"name": "search", "arguments": {"query": "a"}}, {"name": "python"}]))
    assert [call.name for call in turn.calls] == ["search", "python"]


def test_any_name_is_accepted_without_a_tool_set() -> None:
    assert HermesProtocol().parse(block({"name": "anything"})).calls[0].name == "anything"


def test_stop_on_call_end_closes_the_last_block_whether_or_not_the_server_kept_it() -> None:
    parser = HermesProtocol(TOOLS, stop_on_call_end=True)
    payload = '{"name": "search", "arguments": {"query": "x"}}'
    kept = parser.parse(f"go <tool_call>{payload}</tool_call>", stop="</tool_call>")
    dropped = parser.parse(f"go <tool_call>{payload}", stop="</tool_call>")
    assert kept == dropped
    assert dropped.calls[0].raw == f"<tool_call>{payload}</tool_call>"


def test_text_after_the_calls_is_trailing(hermes: HermesProtocol) -> None:
    text = block({"name": "search"}) + "\n<tool_response>\nmade up\n</tool_response>"
    turn = hermes.parse(text)
    assert turn.trailing == "\n<tool_response>\nmade up\n</tool_response>"


def test_answer_is_detected(hermes: HermesProtocol) -> None:
    assert hermes.parse("<answer>\\boxed{3}</answer>").has_answer


# ---------------------------------------------------------------- segments without a call


@pytest.mark.parametrize("text", ["", "Just an answer.", "tool_call without brackets", '{"name": "search"}'])
def test_segment_without_a_call(hermes: HermesProtocol, text: str) -> None:
    assert hermes.parse(text) == ParsedTurn(content=text)


def test_block_cut_by_the_length_limit_is_not_a_call(hermes: HermesProtocol) -> None:
    text = 'Let me search. <tool_call>{"name": "search", "arguments": {"query": "cap'
    turn = hermes.parse(text)
    assert turn.calls == ()
    assert turn.errors == ()
    assert turn.unclosed == "tool_call"
    assert turn.content == text


def test_unclosed_final_block_holding_a_complete_call_is_a_call(hermes: HermesProtocol) -> None:
    text = block({"name": "search"}) + '\n<tool_call>{"name": "python", "arguments": {"code": "1"}}'
    turn = hermes.parse(text)
    assert [call.name for call in turn.calls] == ["search", "python"]
    assert turn.calls[1].raw == '<tool_call>{"name": "python", "arguments": {"code": "1"}}'
    assert turn.unclosed is None


def test_unclosed_final_block_with_a_bad_call_is_not_an_error(hermes: HermesProtocol) -> None:
    turn = hermes.parse(block({"name": "search"}) + '<tool_call>{"name": "calculator"}')
    assert len(turn.calls) == 1
    assert turn.errors == ()
    assert turn.unclosed == "tool_call"


# ---------------------------------------------------------------- malformed calls


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            '{"name": "search" "arguments": {}}',
            "The <tool_call> block is not valid JSON (Expecting ',' delimiter at line 1, column 19): "
            'write it as {"name": "<tool name>", "arguments": {"<argument>": "<value>"}}.',
        ),
        (
            '{"name": "search",\n "arguments": {"query": }}',
            "The <tool_call> block is not valid JSON (Expecting value at line 2, column 25): "
            'write it as {"name": "<tool name>", "arguments": {"<argument>": "<value>"}}.',
        ),
        (
            "  ",
            'The <tool_call> block is empty: put one JSON call in it, {"name": "<tool name>", '
            '"arguments": {"<argument>": "<value>"}}.',
        ),
        (
            '"search"',
            "The <tool_call> block must hold a JSON object, not a string: write it as "
            '{"name": "<tool name>", "arguments": {"<argument>": "<value>"}}.',
        ),
        (
            "[]",
            "The <tool_call> block holds an empty array: write it as "
            '{"name": "<tool name>", "arguments": {"<argument>": "<value>"}}.',
        ),
        (
            '{"arguments": {"query": "x"}}',
            'The <tool_call> block has no "name" string naming the tool to call: write it as '
            '{"name": "<tool name>", "arguments": {"<argument>": "<value>"}}.',
        ),
        (
            '{"name": "", "arguments": {}}',
            'The <tool_call> block has no "name" string naming the tool to call: write it as '
            '{"name": "<tool name>", "arguments": {"<argument>": "<value>"}}.',
        ),
        (
            '{"name": 3}',
            'The <tool_call> block has no "name" string naming the tool to call: write it as '
            '{"name": "<tool name>", "arguments": {"<argument>": "<value>"}}.',
        ),
        (
            '{"name": "calculator", "arguments": {"expr": "1+1"}}',
            "There is no tool called 'calculator': the available tools are python, search.",
        ),
        (
            '{"name": "search", "arguments": ["Paris"]}',
            "The \"arguments\" of the 'search' call must be a JSON object, not an array: write them as "
            '{"name": "<tool name>", "arguments": {"<argument>": "<value>"}}.',
        ),
        (
            '{"name": "search", "arguments": 7}',
            "The \"arguments\" of the 'search' call must be a JSON object, not a number: write them as "
            '{"name": "<tool name>", "arguments": {"<argument>": "<value>"}}.',
        ),
        (
            '{"name": "search", "arguments": "{query: x}"}',
            "The \"arguments\" of the 'search' call are a string that is not valid JSON (Expecting property "
            "name enclosed in double quotes at line 1, column 2): give the arguments as one JSON object.",
        ),
        (
            '{"name": "search", "arguments": "[1]"}',
            "The \"arguments\" of the 'search' call must be a JSON object, not an array: write them as "
            '{"name": "<tool name>", "arguments": {"<argument>": "<value>"}}.',
        ),
    ],
)
def test_malformed_block_gives_one_helpful_sentence(hermes: HermesProtocol, body: str, expected: str) -> None:
    raw = f"<tool_call>{body}</tool_call>"
    turn = hermes.parse(f"Thinking. {raw} done")
    assert only_error(turn) == expected
    assert turn.errors[0].raw == raw
    assert turn.content == "Thinking. "
    assert turn.trailing == " done"


def test_deeply_nested_json_is_an_error_not_a_crash(hermes: HermesProtocol) -> None:
    turn = hermes.parse("<tool_call>" + "[" * 15_000 + "]" * 15_000 + "</tool_call>")
    message = only_error(turn)  # CPython's decoder gives up on depth; either way it is one clean error
    assert "nested too deeply" in message or "must hold a JSON object" in message


def test_an_overlong_integer_is_an_error_not_a_crash(hermes: HermesProtocol) -> None:
    turn = hermes.parse('<tool_call>{"name": "search", "arguments": {"n": ' + "9" * 5000 + "}}</tool_call>")
    assert "not valid JSON" in only_error(turn)


def test_block_over_the_size_limit() -> None:
    parser = HermesProtocol(max_argument_chars=20)
    payload = json.dumps({"name": "search", "arguments": {"query": "x" * 50}})
    turn = parser.parse(f"<tool_call> {payload} </tool_call>")
    assert only_error(turn) == (
        f"The <tool_call> block is {len(payload)} characters long, over the limit of 20: send shorter arguments."
    )


def test_runaway_tool_name_is_shortened_in_the_message(hermes: HermesProtocol) -> None:
    message = only_error(hermes.parse(block({"name": "n" * 1000})))
    assert len(message) < 200


def test_stray_closing_tag(hermes: HermesProtocol) -> None:
    turn = hermes.parse('{"name": "search"}</tool_call>')
    assert only_error(turn).startswith("Found </tool_call> without a matching <tool_call>")
    assert turn.errors[0].raw == "</tool_call>"
    assert turn.content == '{"name": "search"}'


def test_block_opened_inside_another(hermes: HermesProtocol) -> None:
    text = '<tool_call>{"name": "search", <tool_call>{"name": "python"}</tool_call>'
    turn = hermes.parse(text)
    assert [call.name for call in turn.calls] == ["python"]
    assert len(turn.errors) == 1
    assert turn.errors[0].message.startswith("A <tool_call> block was opened before the previous one was closed")
    assert turn.errors[0].raw == '<tool_call>{"name": "search", '


def test_good_and_bad_blocks_are_both_reported(hermes: HermesProtocol) -> None:
    text = block({"name": "search"}) + "<tool_call>oops</tool_call>" + block({"name": "python"})
    turn = hermes.parse(text)
    assert [call.name for call in turn.calls] == ["search", "python"]
    assert len(turn.errors) == 1


def test_calls_per_turn_are_capped_with_one_error_saying_so() -> None:
    parser = HermesProtocol(TOOLS, max_calls_per_turn=2)
    text = block({"name": "search"}) * 5
    turn = parser.parse(text)
    assert len(turn.calls) == 2
    assert only_error(ParsedTurn(errors=turn.errors)) == (
        "Only 2 tool calls are read per turn and the rest were ignored: make fewer calls at a time."
    )
    assert turn.trailing == block({"name": "search"}) * 3


def test_cap_applies_inside_an_array_block() -> None:
    parser = HermesProtocol(max_calls_per_turn=2)
    turn = parser.parse(block([{"name": "a"}, {"name": "b"}, {"name": "c"}]) + block({"name": "d"}))
    assert [call.name for call in turn.calls] == ["a", "b"]
    assert len(turn.errors) == 1
    assert turn.errors[0].message.startswith("Only 2 tool calls")
