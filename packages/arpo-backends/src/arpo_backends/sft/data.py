r"""Demonstrations for the SFT cold start, read from the row formats TRL, verl and LLaMA-Factory users already have.

A ``.jsonl`` file holds one JSON object per line, a ``.json`` file one array of objects, a ``.parquet`` file one
object per row (needs pyarrow). Each row is one of::

    conversational (TRL)      {"messages": [{"role": "system"|"user"|"assistant"|"tool", "content": ...,
                                             "tool_calls"?: [...]}, ...], "tools"?: [...]}
    prompt-completion (TRL)   {"prompt": str | [messages], "completion": str | [messages], "tools"?: [...]}
    ShareGPT (LLaMA-Factory)  {"conversations": [{"from": "human"|"gpt"|"observation"|"function_call"|"system",
                                                  "value": ...}], "system"?: str, "tools"?: str | [...]}

Which turns are trained: every assistant turn of ``messages`` and ``conversations``; only the completion's assistant
turns of a prompt-completion row (assistant turns inside its prompt are context, as in TRL). Tool calls are
OpenAI-style (``{"type": "function", "function": {"name", "arguments"}}``, arguments a JSON object or its JSON
encoding, normalised to an object because templates such as Qwen's expect one).

ARPO raw text (the paper's cold-start data, e.g. ARPO-SFT-54K in ShareGPT form): an assistant turn's content may
interleave reasoning with ``<python>…</python>`` / ``<search>…</search>`` calls and the tool output the rollout
inserted as `` <result>\n…\n</result>``. Those result spans are tool output, not the model's words; tokenisation
masks them (``result_spans`` finds them, leading space included). An unbalanced ``<result>`` is a bad row.

Deviation from TRL: a prompt-completion row of two strings is rendered through the chat template as one user and
one assistant turn (TRL concatenates the raw strings), because ARPO's rollouts render every prompt with the chat
template and the cold start must teach that same format.

A bad row raises ``DemonstrationError`` with one sentence naming the file, the line (``row`` for ``.json`` and
``.parquet``, counted from 0 as pandas does), the bad field and the fix.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NoReturn

from arpo_core.data.loaders import DatasetError
from arpo_core.toolcalls.calls import ToolCallError
from arpo_core.toolcalls.json_calls import call_from_object, json_type_name
from arpo_core.toolcalls.tags import RESULT_OPEN

__all__ = [
    "ROLES",
    "Demonstration",
    "DemonstrationError",
    "DemonstrationFormat",
    "demonstrations_from_rows",
    "load_demonstrations",
    "parse_demonstration",
    "result_spans",
]

ROLES = ("system", "user", "assistant", "tool")
DemonstrationFormat = Literal["messages", "prompt-completion", "sharegpt"]

_RESULT_OPEN_TAG = "<result>"
_RESULT_CLOSE_TAG = "</result>"
_SHAREGPT_ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "function_call": "assistant",
    "observation": "tool",
    "tool": "tool",
    "system": "system",
}
_TEXT_PART_TYPES = ("text", "input_text", "output_text")
_FORMATS_HINT = (
    'give TRL\'s conversational {"messages": [...]}, its prompt-completion {"prompt": ..., "completion": ...} or '
    'ShareGPT\'s {"conversations": [...]}'
)


class DemonstrationError(DatasetError):
    """A demonstration that cannot be trained on; ``str()`` names the file, the row, the field and the fix."""


@dataclass(frozen=True, slots=True, eq=False)
class Demonstration:
    """One conversation to fine-tune on, normalised for ``tokenizer.apply_chat_template``."""

    messages: tuple[dict[str, Any], ...]
    """Chat messages: ``role``, ``content`` (a string), ``tool_calls`` (arguments as objects) and any other keys."""
    trained: tuple[bool, ...]
    """Per message: True on the assistant turns SFT trains on."""
    tools: tuple[dict[str, Any], ...] | None
    """Tool schemas passed to the chat template (OpenAI style), or None."""
    index: int
    """Position of the row among its file's rows, from 0 (``group_id`` is ``f"sft-{index}"``)."""
    where: str
    """Where the row came from, for error messages (e.g. ``"demos.jsonl line 7"``)."""
    format: DemonstrationFormat

    @property
    def group_id(self) -> str:
        return f"sft-{self.index}"


def result_spans(text: str) -> list[tuple[int, int]]:
    """``[start, end)`` of each ``<result>…</result>`` block in ``text`` (with the one space before it, if any).

    A block runs from an opening tag to the first closing tag after it; an unclosed block runs to the end.
    """
    spans: list[tuple[int, int]] = []
    position = 0
    while (opening := text.find(_RESULT_OPEN_TAG, position)) >= 0:
        start = opening - 1 if opening > 0 and text[opening - 1] == RESULT_OPEN[0] else opening
        closing = text.find(_RESULT_CLOSE_TAG, opening + len(_RESULT_OPEN_TAG))
        end = len(text) if closing < 0 else closing + len(_RESULT_CLOSE_TAG)
        spans.append((start, end))
        position = end
    return spans


def _fail(where: str, message: str) -> NoReturn:
    raise DemonstrationError(f"{where}: {message}.")


def _content(value: Any, where: str, field: str) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)):
        texts: list[str] = []
        for j, part in enumerate(value):
            if isinstance(part, str):
                texts.append(part)
            elif (
                isinstance(part, Mapping) and part.get("type") in _TEXT_PART_TYPES and isinstance(part.get("text"), str)
            ):
                texts.append(part["text"])
            else:
                _fail(
                    where,
                    f"{field}[{j}] is not a text part; SFT takes text only, so give "
                    '{"type": "text", "text": ...} or a plain string',
                )
        return "\n".join(texts)
    _fail(where, f"{field} is {json_type_name(value)}; give the turn's text as a string")


def _check_results(text: str, where: str, field: str) -> None:
    """Every ``<result>`` of an assistant turn is closed, and every ``</result>`` opened."""
    position = 0
    while True:
        opening = text.find(_RESULT_OPEN_TAG, position)
        closing = text.find(_RESULT_CLOSE_TAG, position)
        if closing >= 0 and (opening < 0 or closing < opening):
            _fail(
                where,
                f"{field} has a </result> at character {closing} with no <result> before it; tool output is masked "
                "from <result> to </result>, so add the opening tag or remove the stray one",
            )
        if opening < 0:
            return
        closing = text.find(_RESULT_CLOSE_TAG, opening + len(_RESULT_OPEN_TAG))
        if closing < 0:
            _fail(
                where,
                f"{field} opens <result> at character {opening} but never closes it; tool output is masked from "
                "<result> to </result>, so add the closing tag",
            )
        position = closing + len(_RESULT_CLOSE_TAG)


def _tool_calls(value: Any, where: str, field: str) -> list[dict[str, Any]]:
    entries = [value] if isinstance(value, Mapping) else value
    if not isinstance(entries, (list, tuple)):
        _fail(where, f"{field} is {json_type_name(value)}; give a list of OpenAI tool calls")
    calls: list[dict[str, Any]] = []
    for j, entry in enumerate(entries):
        parsed = call_from_object(entry, "", label="The tool call", tools=None)
        if isinstance(parsed, ToolCallError):
            _fail(where, f"{field}[{j}]: {parsed.message.rstrip('.')}")
        call: dict[str, Any] = {"type": "function", "function": {"name": parsed.name, "arguments": parsed.arguments}}
        if parsed.call_id is not None:
            call = {"id": parsed.call_id, **call}
        calls.append(call)
    return calls


def _message(raw: Any, where: str, field: str) -> dict[str, Any]:
    if not isinstance(raw, Mapping):
        _fail(where, f"{field} is {json_type_name(raw)}; give an object with 'role' and 'content'")
    role = raw.get("role")
    if role not in ROLES:
        shown = "no 'role'" if role is None else f"role {role!r}"
        _fail(where, f"{field} has {shown}; use one of {', '.join(ROLES)}")
    message = {str(k): v for k, v in raw.items() if v is not None and k not in ("role", "content", "tool_calls")}
    message["role"] = role
    message["content"] = _content(raw.get("content"), where, f"{field}.content")
    calls = raw.get("tool_calls")
    if calls is not None and (not isinstance(calls, (list, tuple)) or len(calls) > 0):
        if role != "assistant":
            _fail(where, f"{field} is a {role} turn with tool_calls; only assistant turns call tools")
        message["tool_calls"] = _tool_calls(calls, where, f"{field}.tool_calls")
    return message


def _messages(raw: Any, where: str, field: str) -> list[dict[str, Any]]:
    if not isinstance(raw, (list, tuple)) or not raw:
        shown = "an empty list" if isinstance(raw, (list, tuple)) else json_type_name(raw)
        _fail(where, f"{field} is {shown}; give a list of chat messages")
    return [_message(m, where, f"{field}[{i}]") for i, m in enumerate(raw)]


def _tools(raw: Any, where: str) -> tuple[dict[str, Any], ...] | None:
    if raw is None:
        return None
    if isinstance(raw, str):
        if not raw.strip():
            return None
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as err:
            _fail(where, f"'tools' is a string that is not valid JSON ({err.msg}); give a list of tool schemas")
    if not isinstance(raw, (list, tuple)) or not all(isinstance(t, Mapping) for t in raw):
        _fail(where, f"'tools' is {json_type_name(raw)}; give a list of tool schema objects (OpenAI style)")
    return tuple(dict(t) for t in raw) or None


def _content_field(label: str) -> str:
    """Where a turn's text sits in the row: ``'messages'[2].content``, ``'conversations'[1].value``, ``'prompt'``."""
    if not label.endswith("]"):
        return label
    return f"{label}.value" if label.startswith("'conversations'") else f"{label}.content"


def _check_conversation(
    messages: Sequence[dict[str, Any]], trained: Sequence[bool], labels: Sequence[str], where: str, field: str
) -> None:
    """The turn order a chat template and the SFT mask need."""
    if not any(trained):
        _fail(where, f"{field} has no assistant turn; SFT trains on assistant turns, so add one or drop the row")
    first = trained.index(True)
    if first == 0:
        _fail(
            where,
            f"{labels[0]} is an assistant turn with nothing before it; SFT needs the prompt it answers, so add the "
            "user (or system) turn first",
        )
    for i, message in enumerate(messages):
        if message["role"] == "tool":
            before = next((m["role"] for m in reversed(messages[:i]) if m["role"] != "tool"), None)
            if before != "assistant":
                _fail(
                    where,
                    f"{labels[i]} is a tool turn after {'no' if before is None else 'a ' + before} turn; a tool "
                    "result answers an assistant's tool call, so put it right after that assistant turn",
                )
        if trained[i]:
            if not message["content"] and not message.get("tool_calls"):
                _fail(where, f"{labels[i]} is an empty assistant turn; give it content or tool_calls, or drop it")
            _check_results(message["content"], where, _content_field(labels[i]))


def _sharegpt(row: Mapping[str, Any], where: str) -> tuple[list[dict[str, Any]], list[str]]:
    turns = row["conversations"]
    if not isinstance(turns, (list, tuple)) or not turns:
        shown = "an empty list" if isinstance(turns, (list, tuple)) else json_type_name(turns)
        _fail(where, f"'conversations' is {shown}; give a list of {{'from': ..., 'value': ...}} turns")
    messages: list[dict[str, Any]] = []
    labels: list[str] = []
    system = row.get("system")
    if isinstance(system, str) and system:
        messages.append({"role": "system", "content": system})
        labels.append("'system'")
    for i, turn in enumerate(turns):
        field = f"'conversations'[{i}]"
        if isinstance(turn, Mapping) and "role" in turn:  # already OpenAI-style messages
            messages.append(_message(turn, where, field))
            labels.append(field)
            continue
        speaker = turn.get("from") if isinstance(turn, Mapping) else None
        if not isinstance(speaker, str) or speaker not in _SHAREGPT_ROLES or not isinstance(turn, Mapping):
            _fail(where, f"{field} has 'from' {speaker!r}; use one of {', '.join(_SHAREGPT_ROLES)}")
        value = turn.get("value")
        if speaker == "function_call":
            if isinstance(value, str):
                try:
                    value = json.loads(value)
                except json.JSONDecodeError as err:
                    _fail(where, f"{field}.value is not valid JSON ({err.msg}); give the call as a JSON object")
            calls = _tool_calls(value, where, f"{field}.value")
            messages.append({"role": "assistant", "content": "", "tool_calls": calls})
        else:
            messages.append({"role": _SHAREGPT_ROLES[speaker], "content": _content(value, where, f"{field}.value")})
        labels.append(field)
    return messages, labels


def parse_demonstration(row: Any, *, index: int = 0, where: str | None = None) -> Demonstration:
    """One row in any of the accepted formats (see the module docstring) as a ``Demonstration``."""
    where = where if where is not None else f"row {index}"
    if not isinstance(row, Mapping):
        _fail(where, f"the row is {json_type_name(row)}, not an object; {_FORMATS_HINT}")
    tools = _tools(row.get("tools"), where)
    present = {key for key in ("messages", "conversations", "prompt", "completion") if row.get(key) is not None}
    fmt: DemonstrationFormat
    if "messages" in present:
        if present & {"completion", "conversations"}:
            other = "completion" if "completion" in present else "conversations"
            _fail(where, f"the row has both 'messages' and '{other}'; keep one format per row")
        fmt = "messages"
        messages = _messages(row["messages"], where, "'messages'")
        labels = [f"'messages'[{i}]" for i in range(len(messages))]
        trained = [m["role"] == "assistant" for m in messages]
    elif "conversations" in present:
        fmt = "sharegpt"
        messages, labels = _sharegpt(row, where)
        trained = [m["role"] == "assistant" for m in messages]
    elif present & {"prompt", "completion"}:
        fmt = "prompt-completion"
        if "completion" not in present:
            _fail(
                where,
                "the row has a 'prompt' but no 'completion'; a prompt-only row is RL data (arpo train --dataset), "
                "so add the demonstrated 'completion' or give 'messages'",
            )
        if "prompt" not in present:
            _fail(where, "the row has a 'completion' but no 'prompt'; add the 'prompt' it answers")
        prompt, completion = row["prompt"], row["completion"]
        if isinstance(prompt, str):
            head = [{"role": "user", "content": prompt}]
            head_labels = ["'prompt'"]
        else:
            head = _messages(prompt, where, "'prompt'")
            head_labels = [f"'prompt'[{i}]" for i in range(len(head))]
        if isinstance(completion, str):
            tail = [{"role": "assistant", "content": completion}]
            tail_labels = ["'completion'"]
        else:
            tail = _messages(completion, where, "'completion'")
            tail_labels = [f"'completion'[{i}]" for i in range(len(tail))]
        if not any(m["role"] == "assistant" for m in tail):
            _fail(
                where, "'completion' has no assistant turn; SFT trains on the completion's assistant turns, so add one"
            )
        messages, labels = head + tail, head_labels + tail_labels
        trained = [False] * len(head) + [m["role"] == "assistant" for m in tail]
    else:
        found = ", ".join(repr(k) for k in list(row)[:8]) or "none"
        hint = " ('text' alone is TRL's language-modelling format, which has no assistant turn to train)"
        _fail(
            where,
            f"the row has no 'messages', 'prompt'/'completion' or 'conversations' (fields: {found}); "
            f"{_FORMATS_HINT}{hint if 'text' in row else ''}",
        )
    _check_conversation(messages, trained, labels, where, "'conversations'" if fmt == "sharegpt" else "'messages'")
    return Demonstration(tuple(messages), tuple(trained), tools, index, where, fmt)


def demonstrations_from_rows(rows: Iterable[Any], *, source: str = "rows") -> list[Demonstration]:
    """``parse_demonstration`` over in-memory rows (e.g. a ``datasets.Dataset``); errors say ``{source} row {i}``."""
    return [parse_demonstration(row, index=i, where=f"{source} row {i}") for i, row in enumerate(rows)]


def load_demonstrations(path: str | Path, *, limit: int | None = None) -> list[Demonstration]:
    """The demonstrations of a ``.jsonl``, ``.json`` or ``.parquet`` file (the first ``limit`` rows)."""
    p = Path(path)
    name = str(path)
    if not p.is_file():
        raise DemonstrationError(f"{name} does not exist; pass a .jsonl, .json or .parquet file of demonstrations.")
    if p.suffix == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise DemonstrationError(f"reading {name} needs pyarrow: pip install pyarrow.") from None
        rows: list[Any] = pq.read_table(p).to_pylist()
        return demonstrations_from_rows(rows[:limit], source=name)
    if p.suffix == ".json":
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise DemonstrationError(
                f"{name} is not valid JSON ({err.msg} at line {err.lineno}); give one array of row objects, or "
                "use .jsonl with one object per line."
            ) from None
        if not isinstance(data, list):
            raise DemonstrationError(f"{name} holds {json_type_name(data)}; a .json file must hold an array of rows.")
        return demonstrations_from_rows(data[:limit], source=name)
    if p.suffix != ".jsonl":
        raise DemonstrationError(
            f"{name} has suffix {p.suffix!r}; use .jsonl (one object per line), .json or .parquet."
        )
    demos: list[Demonstration] = []
    with p.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if limit is not None and len(demos) >= limit:
                break
            if not line.strip():
                continue
            where = f"{name} line {lineno}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise DemonstrationError(
                    f"{where}: not valid JSON ({err.msg} at column {err.colno}); write one JSON object per line."
                ) from None
            demos.append(parse_demonstration(row, index=len(demos), where=where))
    return demos
