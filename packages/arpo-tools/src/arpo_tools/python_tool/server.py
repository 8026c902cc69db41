"""The ``python`` MCP server: one tool that runs Python 3 code in a fresh sandbox and returns its stdout.

``build_server(config)`` returns an ``MCPServer`` (the official SDK, mcp 2.x; over stdio its lines move without
worker threads, see ``stdio.py``) with:

* tool ``python(code, timeout=None)``: runs ``code`` in a process forked from a warm zygote (math, numpy and sympy
  already imported), isolated as ``sandbox://layers`` reports; the result's text is stdout, then stderr's last
  lines, then bracketed notes (truncation, timeout, kill signal, exit status); ``is_error`` is set for anything
  but a clean exit;
* resource ``sandbox://layers``: which isolation layers are on here, and why the others are off.

The zygote starts with the server's lifespan (or on the first call) and stops with it. Stateless: every call gets
a new process, nothing carries over. ``python -m arpo_tools.python_tool`` serves this over stdio.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

import anyio
from mcp.server.mcpserver import MCPServer
from mcp.types import CallToolResult, TextContent
from pydantic import Field

from arpo_tools.python_tool.config import PythonToolConfig
from arpo_tools.python_tool.layers import Layer, format_layers
from arpo_tools.python_tool.result import format_result
from arpo_tools.python_tool.stdio import ThreadlessStdioServer
from arpo_tools.python_tool.supervisor import PythonSandbox

__all__ = ["build_server", "probe_layers"]

Code = Annotated[str, Field(description="Python 3 source to run as a script; use print() to see values.")]
Timeout = Annotated[
    float | None,
    Field(description="Wall-clock limit in seconds; at most the server's limit, which is also the default.", gt=0),
]


def _description(config: PythonToolConfig) -> str:
    preload = ", ".join(config.preload) or "nothing"
    return (
        "Runs Python 3 code and returns what it printed (stdout); on an error, the end of the traceback. "
        "Print every value you need: nothing is shown otherwise. Each call starts fresh (no variables or files "
        f"carry over). Already imported and fast to import: {preload}. No network; files can be written only "
        f"under /tmp ({config.scratch_mb} MB). Limits: {config.timeout_s:g} s wall clock, {config.memory_mb} MB "
        f"memory, output cut after {config.max_output_bytes} bytes."
    )


def build_server(config: PythonToolConfig | None = None) -> MCPServer:
    """The python tool as an MCP server (serve it with ``.run("stdio")`` or any transport of the SDK).

    Its ``sandbox`` attribute is the ``PythonSandbox`` behind the tool (pids, layers, preload errors), for tests,
    benchmarks and logs.
    """
    config = config or PythonToolConfig()
    sandbox = PythonSandbox(config.to_limits(), required_layers=config.required_layers)

    @asynccontextmanager
    async def lifespan(_: MCPServer) -> AsyncIterator[dict[str, object]]:
        async with sandbox:
            yield {"sandbox": sandbox}

    server: MCPServer = ThreadlessStdioServer(
        "arpo-python",
        instructions=(
            "Sandboxed Python 3 interpreter (tool `python`). Read the resource sandbox://layers for the isolation "
            "layers active on this machine."
        ),
        lifespan=lifespan,
    )
    server.sandbox = sandbox  # type: ignore[attr-defined]  # for tests and the benchmark

    @server.tool(name="python", description=_description(config))
    async def python(code: Code, timeout: Timeout = None) -> CallToolResult:
        if len(code) > config.max_code_chars:
            text = f"[sandbox error: the code is {len(code)} characters long; the limit is {config.max_code_chars}]"
            return CallToolResult(content=[TextContent(type="text", text=text)], is_error=True)
        outcome = await sandbox.run(code, timeout)
        text = format_result(
            outcome,
            max_output_bytes=config.max_output_bytes,
            stderr_tail_lines=config.stderr_tail_lines,
            cpu_limit=min(config.cpu_seconds, (timeout or config.timeout_s) + 1.0),
            memory_mb=config.memory_mb,
            scratch_mb=config.scratch_mb,
        )
        return CallToolResult(
            content=[TextContent(type="text", text=text)], is_error=outcome.failed, meta={"arpo": outcome.meta()}
        )

    @server.resource(
        "sandbox://layers",
        name="sandbox_layers",
        description="The isolation layers every python call runs under here, and why any is off.",
        mime_type="text/plain",
    )
    async def sandbox_layers() -> str:
        return format_layers(await sandbox.layers())

    return server


def probe_layers(config: PythonToolConfig | None = None) -> list[Layer]:
    """Which isolation layers the python tool gets on this machine (starts a sandbox, asks, stops it; ≈ 1 s)."""
    limits = (config or PythonToolConfig()).to_limits()

    async def ask() -> list[Layer]:
        async with PythonSandbox(limits) as sandbox:
            return await sandbox.layers()

    return anyio.run(ask)
