"""A tiny third-party-style MCP server for the client tests (stdio by default; `--http PORT [--token T]`)."""

from __future__ import annotations

import os
import sys
import threading

import anyio
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

server = MCPServer("echo-test")
_in_flight = 0
_peak = 0


@server.tool()
async def echo(text: str) -> str:
    """Return the text unchanged."""
    return text


@server.tool()
async def add(a: int, b: int) -> str:
    """Add two integers."""
    return str(a + b)


@server.tool()
async def nap(seconds: float) -> str:
    """Sleep, then report the most calls that were in flight at once."""
    global _in_flight, _peak
    _in_flight += 1
    _peak = max(_peak, _in_flight)
    try:
        await anyio.sleep(seconds)
    finally:
        _in_flight -= 1
    return f"peak={_peak}"


@server.tool()
async def fail(message: str) -> str:
    """Raise a ToolError: the SDK shows its message to the model (other exceptions are hidden)."""
    raise ToolError(message)


@server.tool()
async def crash(message: str) -> str:
    """Raise an unexpected exception: the SDK hides its message from the model."""
    raise RuntimeError(message)


@server.tool()
async def pid() -> str:
    """The server's process id."""
    return str(os.getpid())


@server.tool()
async def crash_after_reply() -> str:
    """Answer, then exit the process a moment later (a server dying between calls)."""
    threading.Timer(0.2, lambda: os._exit(3)).start()
    return "bye"


@server.tool()
async def die_now() -> str:
    """Exit the process during the call."""
    os._exit(4)


@server.tool(name="weird.name/with spaces")
async def weird() -> str:
    """A tool whose MCP name is not a valid OpenAI function name."""
    return "weird ok"


@server.tool()
async def env(name: str) -> str:
    """The value of an environment variable of the server (to check mcpServers env expansion)."""
    return os.environ.get(name, "<unset>")


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--http":
        from arpo_tools.serving import serve

        token = sys.argv[sys.argv.index("--token") + 1] if "--token" in sys.argv else None
        serve(server, "http", port=int(sys.argv[2]), token=token)
    else:
        server.run("stdio")
