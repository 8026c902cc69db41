"""The records a tool-call parser produces, and the `ToolCallParser` protocol every parser implements.

A parser turns one generated segment (the text the model wrote since the last tool result) into a
`ParsedTurn`: the tool calls to run, and the malformed calls to answer with an error. Parsers are pure and
synchronous, run in time linear in the length of the text, and never raise on model text: broken syntax
becomes a `ToolCallError` whose message the runtime shows the model as that call's tool result (design.md,
"Bad input"). They raise `ValueError` only for bad configuration, when they are constructed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

__all__ = [
    "DEFAULT_MAX_ARGUMENT_CHARS",
    "DEFAULT_MAX_CALLS_PER_TURN",
    "ParsedTurn",
    "ToolCall",
    "ToolCallError",
    "ToolCallParser",
    "has_answer_block",
]

DEFAULT_MAX_ARGUMENT_CHARS = 32_000
"""Longest accepted call body (tag protocol: the stripped text between the tags; hermes: the stripped JSON
between `<tool_call>` and `</tool_call>`). About 8k tokens, twice the paper's 4096-token response budget
for 7B reasoning, so only degenerate output reaches it."""

DEFAULT_MAX_CALLS_PER_TURN = 32
"""Most `<tool_call>` blocks (calls and errors together) the hermes parser reads from one segment; the
rest of the segment is reported as `ParsedTurn.trailing` with one error saying so."""


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One well-formed tool call, ready for the tool client."""

    name: str
    """The tool name exactly as the model wrote it."""
    arguments: Mapping[str, Any]
    """The call's arguments as a JSON object (tag protocol: `{argument_name: text between the tags}`)."""
    raw: str
    """The exact text of the call as generated, opening and closing markup included. When the inference
    server dropped the stop string from its output, the closing tag is re-attached here; a hermes block the
    model never closed has no closing tag. For `from_openai_tool_calls`, the entry's JSON encoding."""
    call_id: str | None = None
    """The hermes/OpenAI call id when the model or API gave one."""


@dataclass(frozen=True, slots=True)
class ToolCallError:
    """A call the model attempted but wrote wrongly; `message` goes back to the model as the tool result."""

    message: str
    """One sentence naming what is wrong and how to fix it, written for the model to read."""
    raw: str
    """The text of the attempted call (or the stray markup) as generated."""


@dataclass(frozen=True, slots=True)
class ParsedTurn:
    """What one generated segment asks the runtime to do.

    No calls and no errors means the segment ended without a tool call (EOS, an answer, the length limit):
    the trajectory is over.
    """

    calls: tuple[ToolCall, ...] = ()
    """Well-formed calls, in the order written."""
    errors: tuple[ToolCallError, ...] = ()
    """Malformed calls, in the order written; each one deserves a tool result carrying its message."""
    content: str = ""
    """The text before the first call or error markup, verbatim (the whole text when there is none): the
    assistant message's `content` for chat APIs. Not stripped."""
    trailing: str = ""
    """Text after the last markup the parser read, verbatim: empty when the server stopped on a stop
    sequence; otherwise text the model wrote past its calls (often a hallucinated tool result), which the
    runtime should drop before inserting results."""
    has_answer: bool = False
    """Whether a complete `<answer>…</answer>` block appears anywhere in the text."""
    unclosed: str | None = None
    """The name of a tool whose opening markup was never closed (for hermes: `"tool_call"`), typically because
    generation hit the length limit. Such a fragment is *not* a call and not an error; it is reported here
    so the runtime can count it."""

    @property
    def has_calls(self) -> bool:
        """Whether the runtime has anything to answer: a call to run or an error to report."""
        return bool(self.calls or self.errors)


@runtime_checkable
class ToolCallParser(Protocol):
    """How model text becomes tool calls, and how tool results go back into the context."""

    @property
    def stop_sequences(self) -> tuple[str, ...]:
        """Strings the inference server should stop generation on (may be empty)."""
        ...

    def parse(self, text: str, *, stop: str | None = None) -> ParsedTurn:
        """Parse one generated segment.

        `text` is what the model generated since the last tool result; `stop` is the stop string that ended
        generation when the server reports one (vLLM's `stop_reason`), whether or not the server kept it in
        `text` (vLLM `include_stop_str_in_output`). Never raises.
        """
        ...

    def format_result(self, result_text: str) -> str:
        """The text inserted into the context after a call (or error) to carry `result_text`."""
        ...


_ANSWER_OPEN = "<answer>"
_ANSWER_CLOSE = "</answer>"


def has_answer_block(text: str) -> bool:
    """Whether `text` holds `<answer>` followed later by `</answer>` (linear time)."""
    start = text.find(_ANSWER_OPEN)
    return start >= 0 and text.find(_ANSWER_CLOSE, start + len(_ANSWER_OPEN)) >= 0
