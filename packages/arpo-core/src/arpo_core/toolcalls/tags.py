"""ARPO's tag protocol: a tool is a tag named after it, `<python>code</python>`, `<search>query</search>`.

Protocol (arpo-spec §5). Each registered tool has a tag name and the name of the one argument its text fills
(default `{"python": "code", "search": "query"}`), so `<python>print(1)</python>` is
`ToolCall("python", {"code": "print(1)"})`. The inference server stops on a tool's closing tag
(`stop_sequences`); the call is the text between the *last* opening tag and that closing tag, surrounding
whitespace stripped. The tool result goes back into the context as `" <result>\\n" + text + "\\n</result>"`.
Servers may or may not keep the stop string in their output (vLLM `include_stop_str_in_output`): pass it
as `stop` and both forms parse the same. A segment is expected to be the text generated since the last tool
result; one segment holds at most one call.

Reference (the ARPO code): tools `search` and `python` only; after stopping on a closing tag it takes
`text[rindex(open, 0, rindex(close)) + len(open) : rindex(close)].strip()` and hands it to the tool.

Deviations from the reference, each so that a malformed call becomes a tool error the model can learn from
instead of a silent wrong call:
- Any tool may be registered, each with its own argument name; `think`, `answer` and `result` are not tools.
- The opening tag is looked for only after the last `</result>` and the last closing tag of the same tool,
  so an earlier, finished call is never paired with a later closing tag.
- Errors (`ToolCallError`, one sentence for the model): a closing tag with no opening tag, an empty call, a
  call longer than `max_argument_chars`, a call opened inside another tool's unclosed tag
  (`<search>q <python>…</python>`), and a closing tag of an unregistered tool (when generation stopped on it,
  or the text ends with it and its opening tag is present).
- The body is dedented (`textwrap.dedent`) before stripping, so a code block indented as a whole stays valid
  Python; for one-line arguments this is the same as `strip()`.
- Without a tool stop string (a server that ignored the stop sequences, or a hosted API), the *first* complete
  call is taken, which is the one the reference would have stopped at; text after it is `ParsedTurn.trailing`.
- A tag opened but never closed (generation hit the length limit, or ended at EOS) is not a call and not an
  error; its tool name is reported in `ParsedTurn.unclosed`.

Kept from the reference: a repeated opening tag of the same tool (`<python>a <python>b</python>`) is not an
error, the last one opens the call. The tool's payload is not inspected: code may contain any text.
Every search is `str.find`/`str.rfind`, so parsing is linear in the length of the text (times the number of
tools) and never raises on model text.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Mapping
from types import MappingProxyType

from .calls import DEFAULT_MAX_ARGUMENT_CHARS, ParsedTurn, ToolCall, ToolCallError, has_answer_block

__all__ = ["DEFAULT_TAG_TOOLS", "NON_TOOL_TAGS", "RESULT_CLOSE", "RESULT_OPEN", "TagProtocol"]

DEFAULT_TAG_TOOLS: Mapping[str, str] = MappingProxyType({"python": "code", "search": "query"})
"""The paper's two tools: tag name → the argument the tag's text fills."""

NON_TOOL_TAGS = frozenset({"think", "answer", "result"})
"""Tags of the protocol that are not tools, and so can be neither registered nor reported as unknown tools."""

RESULT_OPEN = " <result>\n"
RESULT_CLOSE = "\n</result>"

_TAG_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]{0,63}")
_RESULT_END = "</result>"
_MAX_UNKNOWN_TAG = 80  # "</" + name + ">" for the longest name _TAG_NAME admits, with room to spare


class TagProtocol:
    """Parse ARPO tag tool calls; see the module docstring for the exact rules."""

    __slots__ = ("_arguments", "_closing", "_max_argument_chars")

    def __init__(
        self,
        tools: Mapping[str, str] | None = None,
        *,
        max_argument_chars: int = DEFAULT_MAX_ARGUMENT_CHARS,
    ) -> None:
        """`tools` maps each tag name to its argument name (default `DEFAULT_TAG_TOOLS`)."""
        tools = DEFAULT_TAG_TOOLS if tools is None else tools
        if not tools:
            raise ValueError("TagProtocol needs at least one tool: pass a mapping such as {'python': 'code'}.")
        for tag, argument in tools.items():
            if not isinstance(tag, str) or not _TAG_NAME.fullmatch(tag):
                raise ValueError(
                    f"Tool tag {tag!r} is not a valid tag name: use letters, digits, '_', '.' or '-' "
                    "(at most 64 characters, not starting with a digit)."
                )
            if tag in NON_TOOL_TAGS:
                raise ValueError(f"<{tag}> is part of the ARPO protocol, not a tool: give the tool another name.")
            if not isinstance(argument, str) or not argument:
                raise ValueError(f"Tool <{tag}> needs a non-empty argument name, got {argument!r}.")
        if max_argument_chars < 1:
            raise ValueError(f"max_argument_chars must be at least 1, got {max_argument_chars}.")
        self._arguments: dict[str, str] = dict(tools)
        self._closing: dict[str, str] = {f"</{tag}>": tag for tag in tools}
        self._max_argument_chars = max_argument_chars

    def __repr__(self) -> str:
        return f"TagProtocol({self._arguments!r}, max_argument_chars={self._max_argument_chars})"

    @property
    def tools(self) -> Mapping[str, str]:
        """Tag name → argument name, read-only."""
        return MappingProxyType(self._arguments)

    @property
    def max_argument_chars(self) -> int:
        """Longest accepted call body, after stripping."""
        return self._max_argument_chars

    @property
    def stop_sequences(self) -> tuple[str, ...]:
        """The closing tag of every registered tool."""
        return tuple(self._closing)

    def format_result(self, result_text: str) -> str:
        """`" <result>\\n" + result_text + "\\n</result>"`, as the reference inserts tool output."""
        return f"{RESULT_OPEN}{result_text}{RESULT_CLOSE}"

    def parse(self, text: str, *, stop: str | None = None) -> ParsedTurn:
        """Parse one segment; `stop` is the stop string that ended generation, if the server said."""
        answered = has_answer_block(text)
        if stop and stop in self._closing:
            closing_at = text.rfind(stop)
            if closing_at >= 0 and not text[closing_at + len(stop) :].strip():
                return self._parse_call(text, self._closing[stop], closing_at, closing_at + len(stop), answered)
            # The server dropped the stop string from its output: the call runs to the end of the text.
            return self._parse_call(text, self._closing[stop], len(text), len(text), answered, reattach=True)
        first = self._first_closing_tag(text)
        if first is not None:
            closing_at, tag = first
            return self._parse_call(text, tag, closing_at, closing_at + len(tag) + 3, answered)
        unknown = self._unknown_tool(text, stop, answered)
        if unknown is not None:
            return unknown
        return ParsedTurn(content=text, has_answer=answered, unclosed=self._last_opened(text))

    # ------------------------------------------------------------------ internals

    def _parse_call(
        self, text: str, tag: str, body_end: int, close_end: int, answered: bool, *, reattach: bool = False
    ) -> ParsedTurn:
        """The call closed by `</tag>` at `body_end` (its closing tag ends at `close_end`)."""
        opening, closing = f"<{tag}>", f"</{tag}>"
        argument = self._arguments[tag]
        suffix = closing if reattach else ""
        trailing = text[close_end:]
        segment_start = _segment_start(text, closing, body_end)
        open_at = text.rfind(opening, segment_start, body_end)
        if open_at < 0:
            message = (
                f"Found {closing} without a matching {opening}: write the {argument} as "
                f"{opening}...{closing} with both tags."
            )
            return _error_turn(message, text[body_end:close_end] + suffix, text[:body_end], trailing, answered)
        outer = self._unclosed_before(text, tag, segment_start, open_at)
        if outer is not None:
            outer_at, outer_tag = outer
            message = (
                f"The {opening} call is inside an unclosed <{outer_tag}> tag: finish each call with its "
                f"closing tag (</{outer_tag}>) before starting the next, one call at a time."
            )
            raw = text[outer_at:close_end] + suffix
            return _error_turn(message, raw, text[:outer_at], trailing, answered)
        raw = text[open_at:close_end] + suffix
        content = text[:open_at]
        body = text[open_at + len(opening) : body_end]
        stripped = body.strip()
        if not stripped:
            message = f"The {opening} call is empty: put the {argument} between {opening} and {closing}."
            return _error_turn(message, raw, content, trailing, answered)
        if len(stripped) > self._max_argument_chars:
            message = (
                f"The {opening} call is {len(stripped)} characters long, over the limit of "
                f"{self._max_argument_chars}: send a shorter {argument}."
            )
            return _error_turn(message, raw, content, trailing, answered)
        call = ToolCall(tag, {argument: textwrap.dedent(body).strip()}, raw)
        return ParsedTurn(calls=(call,), content=content, trailing=trailing, has_answer=answered)

    def _unclosed_before(self, text: str, tag: str, start: int, end: int) -> tuple[int, str] | None:
        """The latest opening tag of another tool in `text[start:end]` that is not closed before `end`."""
        latest: tuple[int, str] | None = None
        for other in self._arguments:
            if other == tag:
                continue
            found = text.rfind(f"<{other}>", start, end)
            if found < 0 or text.find(f"</{other}>", found, end) >= 0:
                continue
            if latest is None or found > latest[0]:
                latest = (found, other)
        return latest

    def _first_closing_tag(self, text: str) -> tuple[int, str] | None:
        """The earliest closing tag of a registered tool, as (position, tag name)."""
        first: tuple[int, str] | None = None
        for closing, tag in self._closing.items():
            found = text.find(closing)
            if found >= 0 and (first is None or found < first[0]):
                first = (found, tag)
        return first

    def _last_opened(self, text: str) -> str | None:
        """The tool whose opening tag comes last in `text` (called only when no tool tag is closed)."""
        latest: tuple[int, str] | None = None
        for tag in self._arguments:
            found = text.rfind(f"<{tag}>")
            if found >= 0 and (latest is None or found > latest[0]):
                latest = (found, tag)
        return None if latest is None else latest[1]

    def _unknown_tool(self, text: str, stop: str | None, answered: bool) -> ParsedTurn | None:
        """An error when the segment ends on `</name>` of an unregistered tool whose `<name>` is present."""
        if stop and stop.startswith("</") and stop.endswith(">"):
            tag = stop[2:-1]
            if text.endswith(stop):
                closing_at, close_end, suffix = len(text) - len(stop), len(text), ""
            else:
                closing_at, close_end, suffix = len(text), len(text), stop
        else:
            ending = text.rstrip()
            if not ending.endswith(">"):
                return None
            closing_at = ending.rfind("</", max(0, len(ending) - _MAX_UNKNOWN_TAG))
            if closing_at < 0:
                return None
            tag, close_end, suffix = ending[closing_at + 2 : -1], len(ending), ""
        if tag in NON_TOOL_TAGS or tag in self._arguments or not _TAG_NAME.fullmatch(tag):
            return None
        open_at = text.rfind(f"<{tag}>", 0, closing_at)
        if open_at < 0:
            return None
        available = ", ".join(f"<{name}>" for name in self._arguments)
        message = f"There is no tool called <{tag}>: the available tools are {available}."
        raw = text[open_at:close_end] + suffix
        return _error_turn(message, raw, text[:open_at], text[close_end:], answered)


def _segment_start(text: str, closing: str, end: int) -> int:
    """Where the current call can begin: after the last `</result>` and the last `closing` before `end`."""
    start = 0
    for marker in (_RESULT_END, closing):
        found = text.rfind(marker, 0, end)
        if found >= 0:
            start = max(start, found + len(marker))
    return start


def _error_turn(message: str, raw: str, content: str, trailing: str, answered: bool) -> ParsedTurn:
    return ParsedTurn(errors=(ToolCallError(message, raw),), content=content, trailing=trailing, has_answer=answered)
