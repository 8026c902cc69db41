"""MCPToolClient against a real MCP server over stdio and over HTTP (real SDK, real subprocesses, real sockets)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx2
import pytest

from arpo_core.runtime.tools import ToolClient
from arpo_tools.client import MCPToolClient, ToolServerError
from arpo_tools.mcp_config import parse_mcp_config
from arpo_tools.serving import ServingError, build_http_app

ECHO = str(Path(__file__).with_name("echo_server.py"))
pytestmark = pytest.mark.anyio


def stdio_servers(**extra: object) -> dict:  # type: ignore[type-arg]
    return parse_mcp_config({"mcpServers": {"echo": {"command": sys.executable, "args": [ECHO], **extra}}})


async def test_list_and_call_over_stdio() -> None:
    async with MCPToolClient(stdio_servers()) as tools:
        assert isinstance(tools, ToolClient)
        specs = {s.name: s for s in await tools.list_tools()}
        assert {"echo", "add", "nap", "weird_name_with_spaces"} <= set(specs)
        assert specs["add"].parameters["properties"].keys() == {"a", "b"}
        assert specs["add"].openai_schema()["function"]["name"] == "add"
        assert (await tools.call_tool("add", {"a": 2, "b": 40})).text == "42"
        weird = await tools.call_tool("weird_name_with_spaces", {})
        assert weird.text == "weird ok" and not weird.is_error


async def test_tool_failures_are_text_not_exceptions() -> None:
    async with MCPToolClient(stdio_servers()) as tools:
        failed = await tools.call_tool("fail", {"message": "boom"})
        assert failed.is_error and "boom" in failed.text
        crashed = await tools.call_tool("crash", {"message": "internal detail"})
        assert crashed.is_error and crashed.text == "Error executing tool crash"  # the SDK hides the message
        unknown = await tools.call_tool("nope", {})
        assert unknown.is_error and "Unknown tool 'nope'" in unknown.text and "echo" in unknown.text
        bad_args = await tools.call_tool("add", {"a": "x"})
        assert bad_args.is_error
        slow = await tools.call_tool("nap", {"seconds": 5}, timeout=0.3)
        assert slow.is_error and slow.text == "Tool 'nap' timed out after 0.3 s."
        assert (await tools.call_tool("echo", {"text": "still here"})).text == "still here"


async def test_one_session_for_the_run_and_concurrency_limit() -> None:
    async with MCPToolClient(stdio_servers(max_concurrency=2)) as tools:
        first = (await tools.call_tool("pid", {})).text
        peaks: list[str] = []

        async def nap() -> None:
            peaks.append((await tools.call_tool("nap", {"seconds": 0.2})).text)

        async with anyio.create_task_group() as tg:
            for _ in range(6):
                tg.start_soon(nap)
        assert max(int(p.split("=")[1]) for p in peaks) == 2  # never more than max_concurrency in flight
        assert (await tools.call_tool("pid", {})).text == first  # same process: no reconnect per call


async def test_server_that_dies_between_calls_is_restarted_once() -> None:
    async with MCPToolClient(stdio_servers()) as tools:
        old_pid = int((await tools.call_tool("pid", {})).text)
        assert (await tools.call_tool("crash_after_reply", {})).text == "bye"
        with anyio.fail_after(10):
            while _alive(old_pid):  # noqa: ASYNC110 - polling another process's death; no event to wait on
                await anyio.sleep(0.05)
        result = await tools.call_tool("echo", {"text": "back"})
        assert result.text == "back" and not result.is_error and result.meta["attempts"] == 2
        assert int((await tools.call_tool("pid", {})).text) != old_pid


async def test_server_that_dies_during_every_try_gives_a_clear_error_then_recovers() -> None:
    async with MCPToolClient(stdio_servers()) as tools:
        result = await tools.call_tool("die_now", {})
        assert result.is_error and "stopped during the call and again after a restart" in result.text
        assert (await tools.call_tool("echo", {"text": "ok"})).text == "ok"


async def test_env_expansion_reaches_the_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ARPO_TEST_SECRET", "xyz")
    servers = stdio_servers(env={"GREETING": "hi ${ARPO_TEST_SECRET}", "LEVEL": "${ARPO_UNSET_VAR:-low}"})
    async with MCPToolClient(servers) as tools:
        assert (await tools.call_tool("env", {"name": "GREETING"})).text == "hi xyz"
        assert (await tools.call_tool("env", {"name": "LEVEL"})).text == "low"


async def test_a_server_that_cannot_start_is_one_clear_error() -> None:
    servers = parse_mcp_config({"mcpServers": {"ghost": {"command": "/nonexistent/server-binary"}}})
    with pytest.raises(
        ToolServerError, match=r"MCP server 'ghost' \(/nonexistent/server-binary\) could not be started"
    ):
        async with MCPToolClient(servers):
            pass


# ---------------------------------------------------------------------------------------------- HTTP


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def http_server() -> Iterator[tuple[str, str]]:
    port, token = _free_port(), "tok-123"
    proc = subprocess.Popen([sys.executable, ECHO, "--http", str(port), "--token", token], stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/mcp"
    deadline = time.monotonic() + 30
    while True:  # wait until the port accepts connections
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError("the HTTP echo server did not start") from None
            time.sleep(0.05)
    try:
        yield url, token
    finally:
        proc.terminate()
        proc.wait(timeout=10)


async def test_http_with_bearer_token(http_server: tuple[str, str]) -> None:
    url, token = http_server
    servers = parse_mcp_config(
        {"mcpServers": {"remote": {"url": url, "headers": {"Authorization": f"Bearer {token}"}}}}
    )
    async with MCPToolClient(servers) as tools:
        assert (await tools.call_tool("add", {"a": 1, "b": 2})).text == "3"


async def test_http_refuses_a_missing_or_wrong_token_and_a_rebinding_host(http_server: tuple[str, str]) -> None:
    url, token = http_server
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        servers = parse_mcp_config({"mcpServers": {"remote": {"url": url, "headers": headers}}})
        with pytest.raises(ToolServerError, match="'remote'"):
            async with MCPToolClient(servers, connect_timeout=10):
                pass
    async with httpx2.AsyncClient() as http:
        plain = await http.post(url, json={})
        assert plain.status_code == 401
        rebound = await http.post(url, json={}, headers={"Authorization": f"Bearer {token}", "Host": "evil.example:80"})
        assert rebound.status_code in (400, 403, 421)


def test_public_bind_without_token_is_refused() -> None:
    from mcp.server.mcpserver import MCPServer

    with pytest.raises(ServingError, match=r"refusing to serve on 0.0.0.0.*without a token"):
        build_http_app(MCPServer("x"), host="0.0.0.0")
    build_http_app(MCPServer("x"), host="0.0.0.0", token="t")  # with a token it is allowed
    build_http_app(MCPServer("x"), host="127.0.0.1")  # loopback needs none
