"""Turning JSON tool calls (`{"name": ..., "arguments": {...}}`) into `ToolCall`s or `ToolCallError`s.

Shared by the hermes `<tool_call>` parser and the OpenAI `tool_calls` converter, so both accept the same
shapes and word their errors the same way. Accepted, besides the plain `{"name", "arguments"}` object:
`arguments` as a JSON-encoded string (OpenAI style; an empty string or `null` means no arguments),
`parameters` instead of `arguments` (Llama 3.1 style), the OpenAI wrapper
`{"type": "function", "function": {...}}`, and an `id` (kept as `ToolCall.call_id`).
`json.loads` is linear in its input; deep nesting raises `RecursionError`, which is caught like any other
decoding error. Nothing here raises on model output.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from typing import Any

from .calls import ToolCall, ToolCallError

__all__ = ["CALL_EXAMPLE", "call_from_object", "decode_json", "json_type_name", "quote_name"]

CALL_EXAMPLE = '{"name": "<tool name>", "arguments": {"<argument>": "<value>"}}'
"""The shape every error message points the model to."""


def quote_name(name: str, limit: int = 64) -> str:
    """`name` quoted for an error message, cut to `limit` characters so a runaway name stays readable."""
    return repr(name if len(name) <= limit else name[:limit] + "...")


def json_type_name(value: object) -> str:
    """The JSON name of a decoded value's type, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, Mapping):
        return "an object"
    return type(value).__name__


def decode_json(text: str) -> tuple[Any, str | None]:
    """`(value, None)`, or `(None, problem)` where `problem` says what is wrong and where."""
    try:
        return json.loads(text), None
    except json.JSONDecodeError as exc:
        return None, f"{exc.msg} at line {exc.lineno}, column {exc.colno}"
    except RecursionError:
        return None, "it is nested too deeply"
    except ValueError as exc:  # e.g. an integer longer than Python's int_max_str_digits
        return None, str(exc).split("\n", 1)[0].rstrip(".;: ")


def call_from_object(
    obj: object, raw: str, *, label: str, tools: Collection[str] | None, call_id: str | None = None
) -> ToolCall | ToolCallError:
    """Check one decoded JSON call; `label` names it in messages (e.g. "The <tool_call> block")."""
    if isinstance(obj, Mapping) and "name" not in obj and isinstance(obj.get("function"), Mapping):
        if call_id is None and isinstance(obj.get("id"), str):
            call_id = obj["id"]
        obj = obj["function"]
    if not isinstance(obj, Mapping):
        return ToolCallError(
            f"{label} must hold a JSON object, not {json_type_name(obj)}: write it as {CALL_EXAMPLE}.", raw
        )
    name = obj.get("name")
    if not isinstance(name, str) or not name.strip():
        return ToolCallError(f'{label} has no "name" string naming the tool to call: write it as {CALL_EXAMPLE}.', raw)
    if tools is not None and name not in tools:
        available = ", ".join(sorted(tools)) or "none"
        return ToolCallError(f"There is no tool called {quote_name(name)}: the available tools are {available}.", raw)
    arguments = obj["arguments"] if "arguments" in obj else obj.get("parameters")
    if arguments is None:
        arguments = {}
    elif isinstance(arguments, str):
        if not arguments.strip():
            arguments = {}
        else:
            decoded, problem = decode_json(arguments)
            if problem is not None:
                return ToolCallError(
                    f'The "arguments" of the {quote_name(name)} call are a string that is not valid JSON '
                    f"({problem}): give the arguments as one JSON object.",
                    raw,
                )
            arguments = decoded
    if not isinstance(arguments, Mapping):
        return ToolCallError(
            f'The "arguments" of the {quote_name(name)} call must be a JSON object, not '
            f"{json_type_name(arguments)}: write them as {CALL_EXAMPLE}.",
            raw,
        )
    if call_id is None and isinstance(obj.get("id"), str):
        call_id = obj["id"]
    return ToolCall(name, dict(arguments), raw, call_id)
