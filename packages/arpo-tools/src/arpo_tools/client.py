"""``MCPToolClient``: core's ``ToolClient`` over any set of MCP servers, with long-lived sessions.

    async with MCPToolClient.from_file("mcp.json") as tools:
        specs = await tools.list_tools()                 # OpenAI-valid, unique names
        result = await tools.call_tool("python", {"code": "print(6 * 7)"})

* One session per server for the whole run, opened when the client is entered and closed when it is left:
  never a connection per call (stdio connect ≈ 0.7 s, a call ≈ 1 ms). Each session lives in its own task (the
  SDK's context managers must be entered and left in one task), all in one task group.
* Every call has a timeout (the server's ``timeout``, or the call's) and waits for a slot under the server's
  ``max_concurrency``.
* A server that dies (the transport closes) is restarted once and the call retried; if that fails too the call
  returns a clear error — and so do a tool's own failure, bad arguments, a timeout and an unknown tool name:
  ``call_tool`` gives the model text, it does not crash the rollout.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, TextIO

import anyio
import anyio.abc
import httpx2
from mcp import Client, MCPError, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp_types import CONNECTION_CLOSED

from arpo_core.runtime.tools import ToolResult, ToolSpec
from arpo_tools.mcp_config import HttpServerConfig, ServerConfig, StdioServerConfig, load_mcp_config
from arpo_tools.schemas import ToolCatalog

__all__ = ["MCPToolClient", "ToolServerError", "open_tool_client"]


class ToolServerError(RuntimeError):
    """A tool server could not be started or reached; ``str()`` names the server and what to check."""


@dataclass
class _Connection:
    name: str
    config: ServerConfig
    limiter: anyio.CapacityLimiter
    client: Client | None = None
    tools: list[Any] = field(default_factory=list)
    scope: anyio.CancelScope | None = None
    generation: int = 0
    lock: anyio.Lock = field(default_factory=anyio.Lock)
    restarts: int = 0
    last_error: str | None = None


def _result_text(result: Any) -> str:
    parts: list[str] = []
    for block in getattr(result, "content", None) or []:
        kind = getattr(block, "type", "")
        if kind == "text":
            parts.append(block.text)
        elif kind == "resource" and hasattr(getattr(block, "resource", None), "text"):
            parts.append(block.resource.text)
        else:
            parts.append(f"[{kind or 'content'} omitted]")
    if not parts and getattr(result, "structured_content", None) is not None:
        parts.append(json.dumps(result.structured_content, ensure_ascii=False))
    return "\n".join(parts)


class MCPToolClient:
    """Core's ``ToolClient`` over the servers of an ``mcpServers`` config. Use it as an async context manager."""

    def __init__(
        self,
        servers: Mapping[str, ServerConfig],
        *,
        connect_timeout: float = 60.0,
        max_result_chars: int = 20_000,
        errlog: TextIO | None = None,
    ) -> None:
        if not servers:
            raise ToolServerError("no MCP servers are configured; add at least one under 'mcpServers'.")
        self._connections = {
            name: _Connection(name, cfg, anyio.CapacityLimiter(cfg.max_concurrency)) for name, cfg in servers.items()
        }
        self._connect_timeout = connect_timeout
        self._max_result_chars = max_result_chars
        self._errlog = errlog if errlog is not None else sys.stderr
        self._stack: AsyncExitStack | None = None
        self._tg: anyio.abc.TaskGroup | None = None
        self._catalog = ToolCatalog(())

    @classmethod
    def from_file(cls, path: str | Path, **kwargs: Any) -> MCPToolClient:
        return cls(load_mcp_config(path), **kwargs)

    # ------------------------------------------------------------------ lifecycle
    async def __aenter__(self) -> MCPToolClient:
        stack = AsyncExitStack()
        self._tg = await stack.enter_async_context(anyio.create_task_group())
        self._stack = stack
        try:
            for conn in self._connections.values():
                await self._start(conn)
        except BaseException:
            await self.__aexit__(*sys.exc_info())
            raise
        self._rebuild_catalog()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._stack is None:
            return
        for conn in self._connections.values():
            if conn.scope is not None:
                conn.scope.cancel()
        if self._tg is not None:
            self._tg.cancel_scope.cancel()
        stack, self._stack, self._tg = self._stack, None, None
        await stack.aclose()  # leaves the task group: must run in this task, outside any other cancel scope

    def _transport(self, conn: _Connection) -> Any:
        cfg = conn.config
        if isinstance(cfg, StdioServerConfig):
            params = StdioServerParameters(command=cfg.command, args=list(cfg.args), env=cfg.env or None, cwd=cfg.cwd)
            return stdio_client(params, errlog=self._errlog)
        assert isinstance(cfg, HttpServerConfig)
        http = httpx2.AsyncClient(headers=cfg.headers, timeout=httpx2.Timeout(cfg.timeout + 5.0))
        return streamable_http_client(cfg.url, http_client=http)

    async def _serve(self, conn: _Connection, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        """Hold one session open until cancelled. A failure after start-up is recorded, never propagated:
        it would cancel the task group and every other server's session with it."""
        started = False
        mine: Client | None = None
        try:
            with anyio.CancelScope() as scope:
                conn.scope = scope
                async with Client(self._transport(conn), cache=None) as client:
                    listed = await client.list_tools()
                    conn.tools = list(listed.tools)
                    conn.client = mine = client
                    conn.generation += 1
                    started = True
                    task_status.started()
                    await anyio.sleep_forever()
        except Exception as err:
            if not started:
                raise
            conn.last_error = _reason(err)
        finally:
            if mine is not None and conn.client is mine:
                conn.client = None

    async def _start(self, conn: _Connection) -> None:
        assert self._tg is not None
        where = conn.config.command if isinstance(conn.config, StdioServerConfig) else conn.config.url
        try:
            with anyio.fail_after(self._connect_timeout):
                await self._tg.start(self._serve, conn)
        except TimeoutError:
            raise ToolServerError(
                f"MCP server {conn.name!r} ({where}) did not answer within {self._connect_timeout:g} s; check that "
                "it starts on its own."
            ) from None
        except Exception as err:
            reason = _reason(err)
            raise ToolServerError(
                f"MCP server {conn.name!r} ({where}) could not be started: {reason}; check its entry in the "
                "mcpServers config."
            ) from err

    async def _restart(self, conn: _Connection, seen_generation: int) -> None:
        async with conn.lock:
            if conn.generation != seen_generation and conn.client is not None:
                return  # another call already restarted it
            if conn.scope is not None:
                conn.scope.cancel()
            conn.client = None
            conn.restarts += 1
            await self._start(conn)
        self._rebuild_catalog()

    def _rebuild_catalog(self) -> None:
        self._catalog = ToolCatalog.build(
            (conn.name, t.name, t.description, t.input_schema)
            for conn in self._connections.values()
            for t in conn.tools
        )

    # ------------------------------------------------------------------ ToolClient
    async def list_tools(self) -> list[ToolSpec]:
        return list(self._catalog.specs)

    @property
    def catalog(self) -> ToolCatalog:
        return self._catalog

    async def call_tool(self, name: str, arguments: Mapping[str, Any], *, timeout: float | None = None) -> ToolResult:
        if self._tg is None:
            raise RuntimeError("MCPToolClient is not open; use it as `async with MCPToolClient(...) as tools:`.")
        origin = self._catalog.resolve(name)
        if origin is None:
            known = ", ".join(self._catalog.names)
            return ToolResult(f"Unknown tool {name!r}; available tools: {known}.", is_error=True)
        server, tool = origin
        conn = self._connections[server]
        limit = timeout if timeout is not None else conn.config.timeout
        start = time.perf_counter()
        async with conn.limiter:
            for attempt in (1, 2):
                generation = conn.generation
                client = conn.client
                try:
                    if client is None:
                        raise MCPError(CONNECTION_CLOSED, "Connection closed")
                    with anyio.fail_after(limit):
                        result = await client.call_tool(tool, dict(arguments))
                except TimeoutError:
                    return self._result(f"Tool {name!r} timed out after {limit:g} s.", True, start, server, attempt)
                except MCPError as err:
                    if err.code != CONNECTION_CLOSED:
                        return self._result(f"Tool {name!r} failed: {err.message}", True, start, server, attempt)
                    failure: BaseException = err
                except (anyio.ClosedResourceError, anyio.BrokenResourceError, anyio.EndOfStream, OSError) as err:
                    failure = err
                else:
                    text = _result_text(result)
                    return self._result(text, bool(getattr(result, "is_error", False)), start, server, attempt)
                if attempt == 2:
                    break
                try:
                    await self._restart(conn, generation)
                except ToolServerError as err:
                    return self._result(
                        f"Tool server {server!r} stopped and could not be restarted: {err}",
                        True,
                        start,
                        server,
                        attempt,
                    )
        return self._result(
            f"Tool server {server!r} stopped during the call and again after a restart ({_reason(failure)}).",
            True,
            start,
            server,
            2,
        )

    def _result(self, text: str, is_error: bool, start: float, server: str, attempts: int) -> ToolResult:
        meta: dict[str, Any] = {"server": server, "attempts": attempts}
        if len(text) > self._max_result_chars:
            meta["truncated_from_chars"] = len(text)
            text = text[: self._max_result_chars] + f"\n… [output truncated after {self._max_result_chars} characters]"
        return ToolResult(text, is_error, time.perf_counter() - start, meta)


def _reason(err: BaseException) -> str:
    inner = getattr(err, "exceptions", None)  # an exception group (anyio task groups raise them)
    if isinstance(inner, (list, tuple)) and inner:
        return "; ".join(_reason(e) for e in inner)
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0]}" if text else type(err).__name__


def open_tool_client(config: str | Path | None = None, **kwargs: Any) -> MCPToolClient:
    """A client for an ``mcpServers`` file, or for arpo's own tool servers when ``config`` is None.

    Registered in the ``arpo.toolclient`` entry-point group, so arpo-core's commands can open tools without
    importing this package. Enter the result with ``async with``.
    """
    if config is not None:
        return MCPToolClient.from_file(config, **kwargs)
    from arpo_tools.cli import builtin_mcp_config
    from arpo_tools.mcp_config import parse_mcp_config

    return MCPToolClient(parse_mcp_config(builtin_mcp_config()), **kwargs)
