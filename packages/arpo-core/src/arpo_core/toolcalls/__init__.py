"""Tool-call parsing: model text → tool calls, and tool results → context text. Pure and synchronous.

Two protocols implement `ToolCallParser`:
- `TagProtocol` (`"tags"`): ARPO's own, `<python>code</python>`, `<search>query</search>`, results as
  ` <result>\\n…\\n</result>` (arpo-spec §5).
- `HermesProtocol` (`"hermes"`): JSON `<tool_call>{"name": ..., "arguments": {...}}</tool_call>` blocks for
  chat models trained for function calling (arpo-spec §6).
`make_parser` picks one by name; `to_openai_tool_calls` / `from_openai_tool_calls` convert to and from OpenAI
chat `tool_calls`. No parser raises on model text: broken syntax becomes a `ToolCallError` whose one-sentence
message the runtime returns to the model as the tool result.
"""

from .calls import (
    DEFAULT_MAX_ARGUMENT_CHARS,
    DEFAULT_MAX_CALLS_PER_TURN,
    ParsedTurn,
    ToolCall,
    ToolCallError,
    ToolCallParser,
)
from .hermes import HermesProtocol
from .openai_messages import from_openai_tool_calls, to_openai_tool_calls, tool_result_message
from .registry import PROTOCOLS, ProtocolName, make_parser
from .tags import DEFAULT_TAG_TOOLS, TagProtocol

__all__ = [
    "DEFAULT_MAX_ARGUMENT_CHARS",
    "DEFAULT_MAX_CALLS_PER_TURN",
    "DEFAULT_TAG_TOOLS",
    "PROTOCOLS",
    "HermesProtocol",
    "ParsedTurn",
    "ProtocolName",
    "TagProtocol",
    "ToolCall",
    "ToolCallError",
    "ToolCallParser",
    "from_openai_tool_calls",
    "make_parser",
    "to_openai_tool_calls",
    "tool_result_message",
]
