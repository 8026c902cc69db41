"""Converting `ToolCall`s to and from OpenAI chat `tool_calls` entries.

Format (OpenAI chat completions, also served by vLLM and litellm): an assistant message carries
`tool_calls = [{"id": str, "type": "function", "function": {"name": str, "arguments": str}}]`, where
`arguments` is the JSON object encoded as a string. Tool results go back as
`{"role": "tool", "tool_call_id": id, "content": text}` messages (`tool_result_message`).

`from_openai_tool_calls` reads what a hosted model returned: hosted models also produce broken arguments, so
a bad entry becomes a `ToolCallError` (same checks and messages as the hermes parser, `json_calls`) and
nothing raises. `to_openai_tool_calls` writes parsed calls back; a call without an id gets
`f"{id_prefix}{index}"` (give a per-turn prefix when ids must be unique across a conversation).
Round trip: `from_openai_tool_calls(to_openai_tool_calls(calls)).calls` has the same names, arguments and ids.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

from .calls import DEFAULT_MAX_ARGUMENT_CHARS, ParsedTurn, ToolCall, ToolCallError, has_answer_block
from .json_calls import call_from_object, json_type_name

__all__ = ["from_openai_tool_calls", "to_openai_tool_calls", "tool_result_message"]

_LABEL = "The function call"


def to_openai_tool_calls(calls: Iterable[ToolCall], *, id_prefix: str = "call_") -> list[dict[str, Any]]:
    """OpenAI `tool_calls` entries for `calls`, arguments JSON-encoded (non-ASCII kept as is)."""
    return [
        {
            "id": call.call_id if call.call_id is not None else f"{id_prefix}{index}",
            "type": "function",
            "function": {
                "name": call.name,
                "arguments": json.dumps(dict(call.arguments), ensure_ascii=False),
            },
        }
        for index, call in enumerate(calls)
    ]


def tool_result_message(tool_call_id: str, result_text: str) -> dict[str, str]:
    """The chat message that answers the call with id `tool_call_id`."""
    return {"role": "tool", "tool_call_id": tool_call_id, "content": result_text}


def from_openai_tool_calls(
    tool_calls: Sequence[Mapping[str, Any]] | None,
    *,
    content: str | None = None,
    tools: Collection[str] | None = None,
    max_argument_chars: int = DEFAULT_MAX_ARGUMENT_CHARS,
) -> ParsedTurn:
    """A `ParsedTurn` from an assistant message's `tool_calls` (and its `content`, when given).

    `tools`, when given, is the set of names a call may use. An entry's `raw` is its JSON encoding.
    """
    calls: list[ToolCall] = []
    errors: list[ToolCallError] = []
    for entry in tool_calls or ():
        raw = _encode(entry)
        item = _read_entry(entry, raw, tools=tools, max_argument_chars=max_argument_chars)
        if isinstance(item, ToolCall):
            calls.append(item)
        else:
            errors.append(item)
    text = content or ""
    return ParsedTurn(calls=tuple(calls), errors=tuple(errors), content=text, has_answer=has_answer_block(text))


def _read_entry(
    entry: object, raw: str, *, tools: Collection[str] | None, max_argument_chars: int
) -> ToolCall | ToolCallError:
    if not isinstance(entry, Mapping):
        return ToolCallError(f"{_LABEL} must be an object, not {json_type_name(entry)}.", raw)
    function = entry.get("function")
    if not isinstance(function, Mapping):
        return ToolCallError(f'{_LABEL} has no "function" object with the name and arguments of the call.', raw)
    arguments = function.get("arguments")
    size = len(arguments) if isinstance(arguments, str) else 0
    if size > max_argument_chars:
        message = (
            f"The arguments of {_LABEL.lower()} are {size} characters long, over the limit of "
            f"{max_argument_chars}: send shorter arguments."
        )
        return ToolCallError(message, raw)
    call_id = entry.get("id")
    return call_from_object(
        function, raw, label=_LABEL, tools=tools, call_id=call_id if isinstance(call_id, str) else None
    )


def _encode(entry: object) -> str:
    try:
        return json.dumps(entry, ensure_ascii=False, default=repr)
    except (TypeError, ValueError, RecursionError):
        return repr(entry)
