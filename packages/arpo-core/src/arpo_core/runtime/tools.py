"""The ``ToolClient`` protocol: how the runtime calls tools, whatever serves them.

arpo-tools implements it over MCP (any ``mcpServers`` entry: stdio or HTTP); ``arpo_core.testing.FakeToolClient``
implements it in memory for tests. Contract:

* ``list_tools()`` gives every tool once, with an OpenAI-function-compatible name and a JSON-schema object for
  its parameters (the runtime puts them in chat ``tools`` or uses the names as tags).
* ``call_tool()`` never raises for a tool's own failure (bad arguments, the tool's exception, a timeout, a
  server that died and could not be restarted): it returns a ``ToolResult`` with ``is_error=True`` and text the
  model can read, so a rollout never crashes on a tool. It raises only for programming errors (an unknown tool
  name is a tool error too: the model may invent names) and re-raises cancellation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

__all__ = ["ToolClient", "ToolResult", "ToolSpec"]


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """One callable tool."""

    name: str
    """Unique, matching ``^[a-zA-Z0-9_-]{1,64}$`` (OpenAI function-name rules)."""
    description: str
    parameters: Mapping[str, Any] = field(default_factory=lambda: {"type": "object", "properties": {}})
    """JSON schema of the arguments (an object schema)."""
    server: str | None = None
    """The server that provides it, when there are several."""

    def openai_schema(self) -> dict[str, Any]:
        """The ``{"type": "function", "function": {...}}`` entry of a chat-completions ``tools`` list."""
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": dict(self.parameters)},
        }


@dataclass(frozen=True, slots=True)
class ToolResult:
    """What a tool call gave back, as the text the model will see."""

    text: str
    is_error: bool = False
    latency_s: float = 0.0
    meta: Mapping[str, Any] = field(default_factory=dict)
    """Extras for logs and metrics (exit status, truncation, server, attempts)."""


@runtime_checkable
class ToolClient(Protocol):
    async def list_tools(self) -> Sequence[ToolSpec]: ...

    async def call_tool(
        self, name: str, arguments: Mapping[str, Any], *, timeout: float | None = None
    ) -> ToolResult: ...
