"""Hermes/Qwen-style JSON tool calls: `<tool_call>{"name": ..., "arguments": {...}}</tool_call>`.

Protocol (arpo-spec §6, for chat models trained for function calling). A turn may hold several blocks, each
one JSON object `{"name": str, "arguments": object}`; `arguments` may also be a JSON-encoded string (OpenAI
style), which is decoded (other accepted shapes: `json_calls`). Models trained this way usually write all
their calls and then end the turn, so stopping on `</tool_call>` is off by default (`stop_on_call_end=True`
turns it on: one call per generation, as in the tag protocol). A tool result is
`"<tool_response>\\n" + text + "\\n</tool_response>"`, the block Qwen's chat template wraps tool messages in;
with a chat API the runtime sends results as `tool` role messages and the template does this itself.

This is not in the ARPO reference, which only has the tag protocol. Rules where models and servers differ:
- Errors (`ToolCallError`, one sentence for the model): empty block, JSON that does not decode (the message
  gives the decoder's problem and its line and column), a block longer than `max_argument_chars`, a value
  that is not an object, a missing or empty `name`, arguments that are not an object (or a string that does
  not decode to one), a name outside `tools` when `tools` is given (the message lists the available tools),
  a `</tool_call>` with no opening tag, a block opened before the previous one was closed.
- A JSON array of call objects in one block is read as several calls (some models write that).
- An unclosed final block is a call only if its text is already one complete, valid call (vLLM's hermes
  parser accepts it too; a block cut by the length limit cannot decode); otherwise it is neither a call nor
  an error and `ParsedTurn.unclosed` is `"tool_call"`. With `stop="</tool_call>"` the end of the text closes
  the last block, whether or not the server kept the stop string.
- Blocks are delimited by the first `</tool_call>` after `<tool_call>`, without looking inside the JSON
  (as vLLM's hermes parser does): a JSON string that contains the literal markup splits the block, and the
  result is an error, never a wrong call.
- At most `max_calls_per_turn` calls and errors are read from one segment; past that, one error says so and
  the rest of the text is `ParsedTurn.trailing`.
Parsing is linear in the length of the text (`str.find` with cached positions, then `json.loads` on each
bounded block) and never raises on model text.
"""

from __future__ import annotations

from collections.abc import Iterable

from .calls import (
    DEFAULT_MAX_ARGUMENT_CHARS,
    DEFAULT_MAX_CALLS_PER_TURN,
    ParsedTurn,
    ToolCall,
    ToolCallError,
    has_answer_block,
)
from .json_calls import CALL_EXAMPLE, call_from_object, decode_json

__all__ = ["TOOL_CALL_CLOSE", "TOOL_CALL_OPEN", "TOOL_RESPONSE_CLOSE", "TOOL_RESPONSE_OPEN", "HermesProtocol"]

TOOL_CALL_OPEN = "<tool_call>"
TOOL_CALL_CLOSE = "</tool_call>"
TOOL_RESPONSE_OPEN = "<tool_response>\n"
TOOL_RESPONSE_CLOSE = "\n</tool_response>"

_LABEL = f"The {TOOL_CALL_OPEN} block"


class HermesProtocol:
    """Parse `<tool_call>` JSON blocks; see the module docstring for the exact rules."""

    __slots__ = ("_max_argument_chars", "_max_calls_per_turn", "_stop_on_call_end", "_tools")

    def __init__(
        self,
        tools: Iterable[str] | None = None,
        *,
        stop_on_call_end: bool = False,
        max_argument_chars: int = DEFAULT_MAX_ARGUMENT_CHARS,
        max_calls_per_turn: int = DEFAULT_MAX_CALLS_PER_TURN,
    ) -> None:
        """`tools`: the names a call may use (None accepts any name and leaves the check to the runtime)."""
        if isinstance(tools, str):
            raise ValueError(f"tools must be a collection of names, not the string {tools!r}: wrap it in a list.")
        names = None if tools is None else frozenset(tools)
        if names is not None and not all(isinstance(name, str) and name for name in names):
            raise ValueError(f"Tool names must be non-empty strings, got {sorted(map(repr, names))}.")
        if max_argument_chars < 1:
            raise ValueError(f"max_argument_chars must be at least 1, got {max_argument_chars}.")
        if max_calls_per_turn < 1:
            raise ValueError(f"max_calls_per_turn must be at least 1, got {max_calls_per_turn}.")
        self._tools = names
        self._stop_on_call_end = stop_on_call_end
        self._max_argument_chars = max_argument_chars
        self._max_calls_per_turn = max_calls_per_turn

    def __repr__(self) -> str:
        tools = None if self._tools is None else sorted(self._tools)
        return (
            f"HermesProtocol({tools!r}, stop_on_call_end={self._stop_on_call_end}, "
            f"max_argument_chars={self._max_argument_chars}, max_calls_per_turn={self._max_calls_per_turn})"
        )

    @property
    def tools(self) -> frozenset[str] | None:
        """The tool names calls are checked against, or None for any name."""
        return self._tools

    @property
    def max_argument_chars(self) -> int:
        """Longest accepted block body (the stripped JSON), in characters."""
        return self._max_argument_chars

    @property
    def max_calls_per_turn(self) -> int:
        """Most calls and errors read from one segment."""
        return self._max_calls_per_turn

    @property
    def stop_sequences(self) -> tuple[str, ...]:
        """`("</tool_call>",)` when `stop_on_call_end`, else nothing: the model ends its turn itself."""
        return (TOOL_CALL_CLOSE,) if self._stop_on_call_end else ()

    def format_result(self, result_text: str) -> str:
        """`"<tool_response>\\n" + result_text + "\\n</tool_response>"` (Qwen's template wording)."""
        return f"{TOOL_RESPONSE_OPEN}{result_text}{TOOL_RESPONSE_CLOSE}"

    def parse(self, text: str, *, stop: str | None = None) -> ParsedTurn:
        """Parse every `<tool_call>` block of one segment, in order."""
        turn = _TurnBuilder(self._max_calls_per_turn)
        end_closes_block = stop == TOOL_CALL_CLOSE
        next_open = _Finder(text, TOOL_CALL_OPEN)
        next_close = _Finder(text, TOOL_CALL_CLOSE)
        position = 0
        unclosed: str | None = None
        while True:
            open_at, close_at = next_open.at(position), next_close.at(position)
            if open_at < 0 and close_at < 0:
                break
            if turn.full:
                next_markup = min(found for found in (open_at, close_at) if found >= 0)
                turn.add_overflow(text[next_markup : next_markup + 200])
                break
            if close_at >= 0 and (open_at < 0 or close_at < open_at):
                message = (
                    f"Found {TOOL_CALL_CLOSE} without a matching {TOOL_CALL_OPEN}: write each call as "
                    f"{TOOL_CALL_OPEN}{CALL_EXAMPLE}{TOOL_CALL_CLOSE}."
                )
                position = close_at + len(TOOL_CALL_CLOSE)
                turn.add_error(ToolCallError(message, TOOL_CALL_CLOSE), close_at, position)
                continue
            body_start = open_at + len(TOOL_CALL_OPEN)
            reopen_at = next_open.at(body_start)
            if close_at < 0 and end_closes_block:
                close_at = len(text)
            if reopen_at >= 0 and (close_at < 0 or reopen_at < close_at):
                message = (
                    f"A {TOOL_CALL_OPEN} block was opened before the previous one was closed: end each call "
                    f"with {TOOL_CALL_CLOSE} before starting the next."
                )
                turn.add_error(ToolCallError(message, text[open_at:reopen_at]), open_at, reopen_at)
                position = reopen_at
                continue
            if close_at < 0:  # the last block was never closed
                candidates = self._parse_block(text[body_start:], text[open_at:])
                if candidates and all(isinstance(item, ToolCall) for item in candidates):
                    turn.add_block(candidates, open_at, len(text))
                else:
                    unclosed = "tool_call"
                break
            close_end = min(close_at + len(TOOL_CALL_CLOSE), len(text))
            raw = text[open_at:close_end] if close_at < len(text) else text[open_at:] + TOOL_CALL_CLOSE
            turn.add_block(self._parse_block(text[body_start:close_at], raw), open_at, close_end)
            position = close_end
        return turn.build(text, has_answer=has_answer_block(text), unclosed=unclosed)

    def _parse_block(self, body: str, raw: str) -> list[ToolCall | ToolCallError]:
        """The calls (or errors) in one block's body."""
        stripped = body.strip()
        if not stripped:
            return [ToolCallError(f"{_LABEL} is empty: put one JSON call in it, {CALL_EXAMPLE}.", raw)]
        if len(stripped) > self._max_argument_chars:
            message = (
                f"{_LABEL} is {len(stripped)} characters long, over the limit of {self._max_argument_chars}: "
                "send shorter arguments."
            )
            return [ToolCallError(message, raw)]
        decoded, problem = decode_json(stripped)
        if problem is not None:
            return [ToolCallError(f"{_LABEL} is not valid JSON ({problem}): write it as {CALL_EXAMPLE}.", raw)]
        if isinstance(decoded, list):
            if not decoded:
                return [ToolCallError(f"{_LABEL} holds an empty array: write it as {CALL_EXAMPLE}.", raw)]
            return [call_from_object(item, raw, label=_LABEL, tools=self._tools) for item in decoded]
        return [call_from_object(decoded, raw, label=_LABEL, tools=self._tools)]


class _Finder:
    """Next occurrence of `needle` at or after a position that only moves forward: amortised linear."""

    __slots__ = ("_found", "_needle", "_text")

    def __init__(self, text: str, needle: str) -> None:
        self._text, self._needle = text, needle
        self._found = text.find(needle)

    def at(self, position: int) -> int:
        if 0 <= self._found < position:
            self._found = self._text.find(self._needle, position)
        return self._found


class _TurnBuilder:
    """Collects calls and errors in order, tracking where the first markup starts and the last one ends."""

    __slots__ = ("_calls", "_errors", "_first_start", "_last_end", "_limit", "_overflowed")

    def __init__(self, limit: int) -> None:
        self._calls: list[ToolCall] = []
        self._errors: list[ToolCallError] = []
        self._first_start: int | None = None
        self._last_end = 0
        self._limit = limit
        self._overflowed = False

    @property
    def full(self) -> bool:
        return len(self._calls) + len(self._errors) >= self._limit

    def _span(self, start: int, end: int) -> None:
        if self._first_start is None:
            self._first_start = start
        self._last_end = end

    def add_error(self, error: ToolCallError, start: int, end: int) -> None:
        self._errors.append(error)
        self._span(start, end)

    def add_block(self, items: list[ToolCall | ToolCallError], start: int, end: int) -> None:
        raw = ""
        for item in items:
            raw = item.raw
            if self.full:
                self.add_overflow(raw)
                break
            if isinstance(item, ToolCall):
                self._calls.append(item)
            else:
                self._errors.append(item)
        self._span(start, end)

    def add_overflow(self, raw: str) -> None:
        """Say once that the limit was reached; what follows is not read."""
        if self._overflowed:
            return
        self._overflowed = True
        message = (
            f"Only {self._limit} tool calls are read per turn and the rest were ignored: make fewer calls at a time."
        )
        self._errors.append(ToolCallError(message, raw))

    def build(self, text: str, *, has_answer: bool, unclosed: str | None) -> ParsedTurn:
        if self._first_start is None:
            return ParsedTurn(content=text, has_answer=has_answer, unclosed=unclosed)
        return ParsedTurn(
            calls=tuple(self._calls),
            errors=tuple(self._errors),
            content=text[: self._first_start],
            trailing=text[self._last_end :],
            has_answer=has_answer,
            unclosed=unclosed,
        )
