"""Reading demonstrations: TRL conversational, TRL prompt-completion, ShareGPT and ARPO raw text rows, from JSONL,
JSON and parquet; every bad row is one sentence naming the file, the line, the field and the fix."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from arpo_backends.sft import (
    DemonstrationError,
    demonstrations_from_rows,
    load_demonstrations,
    parse_demonstration,
    result_spans,
)
from arpo_core.data.loaders import DatasetError

PYTHON_TOOL = {
    "type": "function",
    "function": {
        "name": "python",
        "description": "Run Python code and return its stdout.",
        "parameters": {"type": "object", "properties": {"code": {"type": "string"}}, "required": ["code"]},
    },
}
TOOL_ROW: dict[str, Any] = {
    "messages": [
        {"role": "user", "content": "What is 6 * 7?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "call_0", "type": "function", "function": {"name": "python", "arguments": '{"code": "6*7"}'}}
            ],
        },
        {"role": "tool", "tool_call_id": "call_0", "content": "42"},
        {"role": "assistant", "content": "<answer>\\boxed{42}</answer>"},
    ],
    "tools": [PYTHON_TOOL],
}
ARPO_COMPLETION = (
    "<think>I need the product.</think><python>print(17 * 23)</python> <result>\n391\n</result>"
    "<answer>\\boxed{391}</answer>"
)


def _write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def test_conversational_rows_keep_every_turn_and_train_every_assistant_turn() -> None:
    demo = parse_demonstration(TOOL_ROW, index=3)
    assert demo.format == "messages" and demo.group_id == "sft-3" and demo.where == "row 3"
    assert [m["role"] for m in demo.messages] == ["user", "assistant", "tool", "assistant"]
    assert demo.trained == (False, True, False, True)
    assert demo.tools == (PYTHON_TOOL,)
    call = demo.messages[1]["tool_calls"][0]
    # arguments JSON-decoded into an object (Qwen-style templates iterate over them); id kept; content "" not None
    assert call == {"id": "call_0", "type": "function", "function": {"name": "python", "arguments": {"code": "6*7"}}}
    assert demo.messages[1]["content"] == ""
    assert demo.messages[2]["tool_call_id"] == "call_0"


def test_prompt_completion_strings_become_one_user_and_one_assistant_turn() -> None:
    demo = parse_demonstration({"prompt": "What is 17 * 23?", "completion": ARPO_COMPLETION})
    assert demo.format == "prompt-completion"
    assert demo.messages == (
        {"role": "user", "content": "What is 17 * 23?"},
        {"role": "assistant", "content": ARPO_COMPLETION},
    )
    assert demo.trained == (False, True)


def test_prompt_completion_message_lists_train_only_the_completion() -> None:
    row = {
        "prompt": [
            {"role": "system", "content": "Use tools."},
            {"role": "user", "content": "1 + 1?"},
            {"role": "assistant", "content": "2"},  # a few-shot turn: context, not trained (as in TRL)
            {"role": "user", "content": "2 + 2?"},
        ],
        "completion": [{"role": "assistant", "content": "4"}],
        "tools": json.dumps([PYTHON_TOOL]),  # datasets often store the schemas as a JSON string
    }
    demo = parse_demonstration(row)
    assert demo.trained == (False, False, False, False, True)
    assert demo.tools == (PYTHON_TOOL,)


def test_sharegpt_rows_as_in_the_arpo_release() -> None:
    row = {
        "system": "You may use <python>.",
        "conversations": [
            {"from": "human", "value": "What is 17 * 23?"},
            {"from": "gpt", "value": ARPO_COMPLETION},
            {"from": "human", "value": "And 6 * 7?"},
            {"from": "function_call", "value": '{"name": "python", "arguments": {"code": "print(6*7)"}}'},
            {"from": "observation", "value": "42"},
            {"from": "gpt", "value": "\\boxed{42}"},
        ],
    }
    demo = parse_demonstration(row)
    assert demo.format == "sharegpt"
    assert [m["role"] for m in demo.messages] == [
        "system",
        "user",
        "assistant",
        "user",
        "assistant",
        "tool",
        "assistant",
    ]
    assert demo.trained == (False, False, True, False, True, False, True)
    assert demo.messages[4]["tool_calls"][0]["function"] == {"name": "python", "arguments": {"code": "print(6*7)"}}


def test_text_parts_are_joined_and_null_optional_fields_dropped() -> None:
    row = {
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}], "name": None},
            {"role": "assistant", "content": "c", "tool_calls": None, "tool_call_id": None},
        ]
    }
    demo = parse_demonstration(row)
    assert demo.messages == ({"role": "user", "content": "a\nb"}, {"role": "assistant", "content": "c"})


def test_result_spans_cover_the_inserted_tool_output_and_its_leading_space() -> None:
    text = "x<python>1</python> <result>\n1\n</result>y<result>2</result>"
    spans = result_spans(text)
    assert [text[a:b] for a, b in spans] == [" <result>\n1\n</result>", "<result>2</result>"]
    assert result_spans("<result>never closed") == [(0, 20)]
    assert result_spans("no tools") == []


def test_load_jsonl_counts_rows_not_lines_and_stops_at_limit(tmp_path: Path) -> None:
    path = tmp_path / "demos.jsonl"
    lines = [json.dumps(TOOL_ROW), "", json.dumps({"prompt": "q", "completion": "a"}), json.dumps(TOOL_ROW)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    demos = load_demonstrations(path)
    assert [d.group_id for d in demos] == ["sft-0", "sft-1", "sft-2"]
    assert [d.where for d in demos] == [f"{path} line 1", f"{path} line 3", f"{path} line 4"]
    assert len(load_demonstrations(path, limit=2)) == 2


def test_load_json_array(tmp_path: Path) -> None:
    path = tmp_path / "demos.json"
    path.write_text(json.dumps([TOOL_ROW, {"prompt": "q", "completion": "a"}]), encoding="utf-8")
    demos = load_demonstrations(path)
    assert [d.format for d in demos] == ["messages", "prompt-completion"]
    assert demos[1].where == f"{path} row 1"


def test_load_parquet_with_pyarrow_struct_columns(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    path = tmp_path / "demos.parquet"
    short = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    rows = [  # one schema for all rows, as datasets writes it: absent fields and struct keys come back as None
        {"messages": TOOL_ROW["messages"], "prompt": None, "completion": None, "tools": json.dumps([PYTHON_TOOL])},
        {"messages": short, "prompt": None, "completion": None, "tools": None},
        {"messages": None, "prompt": "q", "completion": "a", "tools": None},
    ]
    pq.write_table(pa.Table.from_pylist(rows), path)
    demos = load_demonstrations(path)
    assert [d.format for d in demos] == ["messages", "messages", "prompt-completion"]
    assert [d.trained for d in demos] == [(False, True, False, True), (False, True), (False, True)]
    assert demos[0].messages[1]["tool_calls"][0]["function"]["arguments"] == {"code": "6*7"}
    assert demos[1].messages == tuple(short) and demos[1].tools is None
    assert demos[2].where == f"{path} row 2"


def test_in_memory_rows_name_their_source() -> None:
    with pytest.raises(DemonstrationError, match=r"^my-dataset row 1: "):
        demonstrations_from_rows([TOOL_ROW, {"messages": []}], source="my-dataset")


def test_the_briefs_example_message_word_for_word(tmp_path: Path) -> None:
    path = _write_jsonl(tmp_path / "demos.jsonl", [TOOL_ROW] * 6 + [{"messages": [{"role": "user", "content": "hi"}]}])
    with pytest.raises(DemonstrationError) as err:
        load_demonstrations(path)
    assert str(err.value) == (
        f"{path} line 7: 'messages' has no assistant turn; SFT trains on assistant turns, so add one or drop the row."
    )
    assert isinstance(err.value, DatasetError)  # the CLI catches core's dataset errors already


def _user(text: str = "q") -> dict[str, Any]:
    return {"role": "user", "content": text}


def _assistant(text: str = "a") -> dict[str, Any]:
    return {"role": "assistant", "content": text}


BAD_ROWS = [
    pytest.param(["not", "an", "object"], r"the row is an array, not an object; give TRL's conversational", id="array"),
    pytest.param(
        {"text": "hello"},
        r"the row has no 'messages', 'prompt'/'completion' or 'conversations' \(fields: 'text'\).*"
        r"'text' alone is TRL's language-modelling format",
        id="text-only",
    ),
    pytest.param(
        {"prompt": [_user()], "reward_model": {"ground_truth": "1"}},
        r"the row has a 'prompt' but no 'completion'; a prompt-only row is RL data \(arpo train --dataset\)",
        id="rl-row",
    ),
    pytest.param(
        {"completion": "a"},
        r"the row has a 'completion' but no 'prompt'; add the 'prompt' it answers\.$",
        id="no-prompt",
    ),
    pytest.param(
        {"messages": [_user(), _assistant()], "completion": "a"},
        r"the row has both 'messages' and 'completion'; keep one format per row\.$",
        id="both",
    ),
    pytest.param({"messages": "hi"}, r"'messages' is a string; give a list of chat messages", id="messages-string"),
    pytest.param({"messages": []}, r"'messages' is an empty list; give a list of chat messages", id="messages-empty"),
    pytest.param(
        {"messages": [{"role": "developer", "content": "x"}, _assistant()]},
        r"'messages'\[0\] has role 'developer'; use one of system, user, assistant, tool\.$",
        id="role",
    ),
    pytest.param({"messages": [{"content": "x"}, _assistant()]}, r"'messages'\[0\] has no 'role'", id="no-role"),
    pytest.param(
        {"messages": [_user(), {"role": "assistant", "content": 7}]},
        r"'messages'\[1\]\.content is a number; give the turn's text as a string\.$",
        id="content-number",
    ),
    pytest.param(
        {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": "x"}]}, _assistant()]},
        r"'messages'\[0\]\.content\[0\] is not a text part; SFT takes text only",
        id="image",
    ),
    pytest.param(
        {"messages": [_assistant(), _user()]},
        r"'messages'\[0\] is an assistant turn with nothing before it; SFT needs the prompt it answers",
        id="assistant-first",
    ),
    pytest.param(
        {"messages": [_user(), {"role": "tool", "content": "42"}, _assistant()]},
        r"'messages'\[1\] is a tool turn after a user turn; a tool result answers an assistant's tool call",
        id="tool-after-user",
    ),
    pytest.param(
        {"messages": [_user(), _assistant(""), _user(), _assistant()]},
        r"'messages'\[1\] is an empty assistant turn; give it content or tool_calls, or drop it\.$",
        id="empty-assistant",
    ),
    pytest.param(
        {
            "messages": [
                _user(),
                {
                    "role": "assistant",
                    "content": "",
                    "tool_calls": [{"function": {"name": "python", "arguments": "{x"}}],
                },
            ]
        },
        r"'messages'\[1\]\.tool_calls\[0\]: The \"arguments\" of the 'python' call are a string that is not valid "
        r"JSON \(Expecting property name",
        id="arguments-json",
    ),
    pytest.param(
        {
            "messages": [
                _user(),
                {"role": "assistant", "content": "", "tool_calls": [{"function": {"arguments": "{}"}}]},
            ]
        },
        r"'messages'\[1\]\.tool_calls\[0\]: The tool call has no \"name\" string",
        id="call-without-name",
    ),
    pytest.param(
        {"messages": [{"role": "user", "content": "", "tool_calls": [{"function": {"name": "f"}}]}, _assistant()]},
        r"'messages'\[0\] is a user turn with tool_calls; only assistant turns call tools",
        id="user-tool-calls",
    ),
    pytest.param(
        {"prompt": "q", "completion": "<python>1</python> <result>\n1\n<answer>1</answer>"},
        r"'completion' opens <result> at character 19 but never closes it; .* add the closing tag\.$",
        id="unclosed-result",
    ),
    pytest.param(
        {"messages": [_user(), _assistant("1\n</result> done")]},
        r"'messages'\[1\]\.content has a </result> at character 2 with no <result> before it",
        id="stray-result",
    ),
    pytest.param(
        {"prompt": [_user()], "completion": [{"role": "tool", "content": "x"}]},
        r"'completion' has no assistant turn; SFT trains on the completion's assistant turns, so add one\.$",
        id="completion-without-assistant",
    ),
    pytest.param(
        {"messages": [_user(), _assistant()], "tools": "{not json"},
        r"'tools' is a string that is not valid JSON",
        id="tools-json",
    ),
    pytest.param(
        {"messages": [_user(), _assistant()], "tools": {"name": "python"}},
        r"'tools' is an object; give a list of tool schema objects",
        id="tools-object",
    ),
    pytest.param(
        {"conversations": [{"from": "bot", "value": "x"}]},
        r"'conversations'\[0\] has 'from' 'bot'; use one of human, user, gpt",
        id="sharegpt-from",
    ),
    pytest.param(
        {"conversations": [{"from": "human", "value": "x"}]},
        r"'conversations' has no assistant turn; SFT trains on assistant turns, so add one or drop the row\.$",
        id="sharegpt-no-gpt",
    ),
]


@pytest.mark.parametrize(("row", "message"), BAD_ROWS)
def test_bad_rows_name_file_line_field_and_fix(tmp_path: Path, row: Any, message: str) -> None:
    path = _write_jsonl(tmp_path / "demos.jsonl", [TOOL_ROW, row])
    with pytest.raises(DemonstrationError, match=rf"^{path} line 2: {message}") as err:
        load_demonstrations(path)
    text = str(err.value)
    assert text.endswith(".") and "\n" not in text


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(DemonstrationError, match=r"missing\.jsonl does not exist; pass a \.jsonl, \.json or \.parquet"):
        load_demonstrations(tmp_path / "missing.jsonl")
    csv = tmp_path / "demos.csv"
    csv.write_text("a,b\n")
    with pytest.raises(DemonstrationError, match=r"has suffix '\.csv'; use \.jsonl"):
        load_demonstrations(csv)
    broken = tmp_path / "broken.jsonl"
    broken.write_text(json.dumps(TOOL_ROW) + "\n{oops\n")
    with pytest.raises(DemonstrationError, match=r"broken\.jsonl line 2: not valid JSON \(.*\); write one JSON object"):
        load_demonstrations(broken)
    not_array = tmp_path / "demos.json"
    not_array.write_text(json.dumps(TOOL_ROW))
    with pytest.raises(DemonstrationError, match=r"holds an object; a \.json file must hold an array of rows"):
        load_demonstrations(not_array)


def test_the_papers_rl_parquet_is_refused_as_sft_data(shared_data: Path) -> None:
    path = shared_data / "arpo-reference" / "valid.parquet"
    with pytest.raises(DemonstrationError, match=r"valid\.parquet row 0: the row has a 'prompt' but no 'completion'"):
        load_demonstrations(path, limit=1)
