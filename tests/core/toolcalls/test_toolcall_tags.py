"""TagProtocol: ARPO's `<python>…</python>` / `<search>…</search>` tool calls, one case per branch."""

from __future__ import annotations

import pytest

from arpo_core.toolcalls import DEFAULT_TAG_TOOLS, ParsedTurn, TagProtocol, ToolCall, ToolCallParser


@pytest.fixture
def tags() -> TagProtocol:
    return TagProtocol()


def only_error(turn: ParsedTurn) -> str:
    assert turn.calls == ()
    assert len(turn.errors) == 1
    return turn.errors[0].message


# ---------------------------------------------------------------- construction and formatting


def test_defaults_are_the_papers_two_tools(tags: TagProtocol) -> None:
    assert dict(tags.tools) == {"python": "code", "search": "query"}
    assert tags.stop_sequences == ("</python>", "</search>")
    assert isinstance(tags, ToolCallParser)


def test_result_is_formatted_as_the_reference_inserts_it(tags: TagProtocol) -> None:
    assert tags.format_result("42") == " <result>\n42\n</result>"


def test_registered_tool_uses_its_argument_name() -> None:
    parser = TagProtocol({"wiki": "title", "python": "code"})
    assert parser.stop_sequences == ("</wiki>", "</python>")
    turn = parser.parse("<wiki>Ada Lovelace</wiki>", stop="</wiki>")
    assert turn.calls == (ToolCall("wiki", {"title": "Ada Lovelace"}, "<wiki>Ada Lovelace</wiki>"),)


def test_tools_view_is_read_only(tags: TagProtocol) -> None:
    with pytest.raises(TypeError):
        tags.tools["calc"] = "expr"  # type: ignore[index]


@pytest.mark.parametrize(
    ("tools", "fragment"),
    [
        ({}, "at least one tool"),
        ({"answer": "text"}, "part of the ARPO protocol"),
        ({"think": "text"}, "part of the ARPO protocol"),
        ({"result": "text"}, "part of the ARPO protocol"),
        ({"bad tag": "x"}, "not a valid tag name"),
        ({"<python>": "code"}, "not a valid tag name"),
        ({"1st": "x"}, "not a valid tag name"),
        ({"python": ""}, "non-empty argument name"),
    ],
)
def test_bad_configuration_is_refused_with_a_sentence(tools: dict[str, str], fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        TagProtocol(tools)


def test_max_argument_chars_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        TagProtocol(max_argument_chars=0)


def test_repr_names_the_tools(tags: TagProtocol) -> None:
    assert "python" in repr(tags)
    assert "search" in repr(tags)


# ---------------------------------------------------------------- well-formed calls


def test_call_with_stop_string_kept_in_output(tags: TagProtocol) -> None:
    text = "<think>add</think> Let me compute. <python>print(1 + 1)</python>"
    turn = tags.parse(text, stop="</python>")
    assert turn.calls == (ToolCall("python", {"code": "print(1 + 1)"}, "<python>print(1 + 1)</python>"),)
    assert turn.errors == ()
    assert turn.content == "<think>add</think> Let me compute. "
    assert turn.trailing == ""
    assert turn.has_calls


def test_call_with_stop_string_dropped_by_the_server_parses_the_same(tags: TagProtocol) -> None:
    kept = tags.parse("Look it up. <search> capital of France </search>", stop="</search>")
    dropped = tags.parse("Look it up. <search> capital of France ", stop="</search>")
    assert kept == dropped
    assert dropped.calls[0].arguments == {"query": "capital of France"}
    assert dropped.calls[0].raw == "<search> capital of France </search>"


def test_whitespace_after_the_stop_string_is_trailing(tags: TagProtocol) -> None:
    turn = tags.parse("<python>x = 1</python>\n", stop="</python>")
    assert turn.calls[0].arguments == {"code": "x = 1"}
    assert turn.trailing == "\n"


def test_last_opening_tag_opens_the_call_as_in_the_reference(tags: TagProtocol) -> None:
    turn = tags.parse("<python>draft <python>print(2)</python>", stop="</python>")
    assert turn.calls[0].arguments == {"code": "print(2)"}
    assert turn.content == "<python>draft "


def test_indented_code_block_is_dedented_so_it_stays_valid_python(tags: TagProtocol) -> None:
    turn = tags.parse("<python>\n    x = 1\n    if x:\n        print(x)\n</python>", stop="</python>")
    code = turn.calls[0].arguments["code"]
    assert code == "x = 1\nif x:\n    print(x)"
    compile(code, "<call>", "exec")


def test_payload_may_mention_other_tags(tags: TagProtocol) -> None:
    code = 'print("<search>not a call</search> <answer>")'
    turn = tags.parse(f"<python>{code}</python>", stop="</python>")
    assert turn.calls[0].arguments == {"code": code}


def test_earlier_finished_call_and_result_are_not_paired_with_the_new_closing_tag(tags: TagProtocol) -> None:
    text = "<python>a = 1</python> <result>\n\n</result> then print(a)</python>"
    turn = tags.parse(text, stop="</python>")
    assert "without a matching <python>" in only_error(turn)


def test_an_unclosed_tag_before_a_result_does_not_count_as_nesting(tags: TagProtocol) -> None:
    text = "<search>q <result>\nx\n</result> <python>print(1)</python>"
    turn = tags.parse(text, stop="</python>")
    assert turn.calls[0].arguments == {"code": "print(1)"}


def test_an_earlier_closed_call_of_another_tool_is_not_nesting(tags: TagProtocol) -> None:
    turn = tags.parse("<search>q</search> <python>print(1)</python>", stop="</python>")
    assert turn.calls[0].arguments == {"code": "print(1)"}
    assert turn.content == "<search>q</search> "


def test_unicode_and_nul_survive(tags: TagProtocol) -> None:
    turn = tags.parse("<search>Zürich \x00 東京 🚀</search>", stop="</search>")
    assert turn.calls[0].arguments == {"query": "Zürich \x00 東京 🚀"}


# ---------------------------------------------------------------- no stop string: the first complete call


def test_without_stop_the_first_complete_call_is_taken(tags: TagProtocol) -> None:
    text = "<python>print(6 * 7)</python> <result>\n42\n</result> <answer>\\boxed{42}</answer>"
    turn = tags.parse(text)
    assert turn.calls == (ToolCall("python", {"code": "print(6 * 7)"}, "<python>print(6 * 7)</python>"),)
    assert turn.trailing == " <result>\n42\n</result> <answer>\\boxed{42}</answer>"
    assert turn.has_answer


def test_a_non_tool_stop_is_treated_like_no_stop(tags: TagProtocol) -> None:
    turn = tags.parse("<search>q</search>", stop="<|im_end|>")
    assert turn.calls[0].arguments == {"query": "q"}


def test_content_plus_raw_plus_trailing_rebuilds_the_text(tags: TagProtocol) -> None:
    text = "pre <search>q</search> post"
    turn = tags.parse(text)
    assert turn.content + turn.calls[0].raw + turn.trailing == text


# ---------------------------------------------------------------- segments without a call


@pytest.mark.parametrize(
    "text",
    [
        "",
        "The answer is <answer>\\boxed{4}</answer>",
        "<think>no tools needed</think> plain text",
        "mentions python and search but uses no tags",
        "<b>bold</b> and <i>html</i> in the middle, then an ending",
    ],
)
@pytest.mark.parametrize("stop", [None, "</answer>", "<|im_end|>"])
def test_segment_without_a_call_gives_no_calls_and_no_errors(tags: TagProtocol, text: str, stop: str | None) -> None:
    turn = tags.parse(text, stop=stop)
    assert turn == ParsedTurn(content=text, has_answer="<answer>" in text)
    assert not turn.has_calls


def test_answer_is_detected(tags: TagProtocol) -> None:
    assert tags.parse("<answer>\\boxed{7}</answer>", stop="</answer>").has_answer
    assert tags.parse("<answer>\\boxed{7}", stop="</answer>").has_answer is False


def test_tag_cut_by_the_length_limit_is_not_a_call(tags: TagProtocol) -> None:
    turn = tags.parse("Let me run <python>for i in range(10):\n    print(i")
    assert turn.calls == ()
    assert turn.errors == ()
    assert turn.unclosed == "python"
    assert turn.content == "Let me run <python>for i in range(10):\n    print(i"


def test_unclosed_reports_the_last_opened_tool(tags: TagProtocol) -> None:
    assert tags.parse("<python>x <search>y").unclosed == "search"


# ---------------------------------------------------------------- malformed calls


def test_closing_tag_without_opening_tag(tags: TagProtocol) -> None:
    turn = tags.parse("I will run print(1)</python>", stop="</python>")
    assert only_error(turn) == (
        "Found </python> without a matching <python>: write the code as <python>...</python> with both tags."
    )
    assert turn.errors[0].raw == "</python>"
    assert turn.content == "I will run print(1)"


def test_closing_tag_without_opening_tag_when_the_server_dropped_it(tags: TagProtocol) -> None:
    turn = tags.parse("just a query", stop="</search>")
    assert "without a matching <search>" in only_error(turn)
    assert turn.errors[0].raw == "</search>"


def test_closing_tag_without_opening_tag_without_stop(tags: TagProtocol) -> None:
    turn = tags.parse("query</search> and more")
    assert "without a matching <search>" in only_error(turn)
    assert turn.trailing == " and more"


@pytest.mark.parametrize("body", ["", "   ", "\n\t\n"])
def test_empty_call(tags: TagProtocol, body: str) -> None:
    turn = tags.parse(f"<python>{body}</python>", stop="</python>")
    assert only_error(turn) == "The <python> call is empty: put the code between <python> and </python>."
    assert turn.errors[0].raw == f"<python>{body}</python>"


def test_call_over_the_size_limit() -> None:
    parser = TagProtocol(max_argument_chars=10)
    assert parser.parse("<search>0123456789</search>").calls  # exactly the limit is fine
    turn = parser.parse("<search>0123456789A</search>")
    assert only_error(turn) == ("The <search> call is 11 characters long, over the limit of 10: send a shorter query.")


def test_size_limit_counts_the_stripped_body() -> None:
    parser = TagProtocol(max_argument_chars=3)
    assert parser.parse("<search>" + " " * 100 + "abc" + " " * 100 + "</search>").calls


def test_call_nested_inside_another_tools_unclosed_tag(tags: TagProtocol) -> None:
    turn = tags.parse("<search>capital of <python>print(1)</python>", stop="</python>")
    assert only_error(turn) == (
        "The <python> call is inside an unclosed <search> tag: finish each call with its closing tag "
        "(</search>) before starting the next, one call at a time."
    )
    assert turn.errors[0].raw == "<search>capital of <python>print(1)</python>"
    assert turn.content == ""


def test_nested_call_is_reported_with_the_innermost_outer_tag() -> None:
    parser = TagProtocol({"python": "code", "search": "query", "wiki": "title"})
    turn = parser.parse("<wiki>a <search>b <python>c</python>", stop="</python>")
    assert "unclosed <search>" in only_error(turn)


def test_stop_on_an_unregistered_closing_tag(tags: TagProtocol) -> None:
    turn = tags.parse("Compute <calculator>2 + 2", stop="</calculator>")
    assert only_error(turn) == "There is no tool called <calculator>: the available tools are <python>, <search>."
    assert turn.errors[0].raw == "<calculator>2 + 2</calculator>"
    assert turn.content == "Compute "


def test_stop_on_an_unregistered_closing_tag_kept_in_output(tags: TagProtocol) -> None:
    turn = tags.parse("<calculator>2 + 2</calculator>", stop="</calculator>")
    assert turn.errors[0].raw == "<calculator>2 + 2</calculator>"


def test_text_ending_on_an_unregistered_tool_tag(tags: TagProtocol) -> None:
    turn = tags.parse("Let me use <wikipedia>Paris</wikipedia>\n")
    assert "no tool called <wikipedia>" in only_error(turn)
    assert turn.trailing == "\n"


@pytest.mark.parametrize(
    ("text", "stop"),
    [
        ("<answer>\\boxed{1}</answer>", None),  # a protocol tag, not a tool
        ("<think>hmm</think>", None),
        ("x</calculator>", "</calculator>"),  # no opening tag: nothing to call
        ("x</calculator>", None),
        ("<a b>x</a b>", None),  # not a tag name
        ("ends with </>", None),
        ("ends with <>", None),
    ],
)
def test_unregistered_tags_that_are_not_tool_calls_are_left_alone(
    tags: TagProtocol, text: str, stop: str | None
) -> None:
    assert tags.parse(text, stop=stop).errors == ()


def test_every_message_is_one_sentence(tags: TagProtocol) -> None:
    texts = [
        ("x</python>", "</python>"),
        ("<python> </python>", "</python>"),
        ("<search>a <python>b</python>", "</python>"),
        ("<calc>1</calc>", "</calc>"),
    ]
    for text, stop in texts:
        message = only_error(tags.parse(text, stop=stop))
        assert message.endswith(".")
        assert ". " not in message.rstrip(".")
        assert "\n" not in message


def test_default_tools_constant_is_immutable() -> None:
    with pytest.raises(TypeError):
        DEFAULT_TAG_TOOLS["calc"] = "expr"  # type: ignore[index]
