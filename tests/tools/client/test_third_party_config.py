"""One mcpServers file registering both arpo servers and a third-party server; a tool of each is called.

python runs over stdio (`arpo tools serve python`), search over HTTP with a bearer token
(`arpo tools serve search --transport http`), and the test's own tiny server over stdio — the way a user
registers tools in Claude Desktop, Cursor or pydantic-ai.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from arpo_tools.client import MCPToolClient

ARPO = str(Path(sys.executable).parent / "arpo")
ECHO = str(Path(__file__).with_name("echo_server.py"))
pytestmark = pytest.mark.anyio


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def search_over_http() -> Iterator[tuple[str, str]]:
    port, token = _free_port(), "search-token"
    proc = subprocess.Popen(
        [ARPO, "tools", "serve", "search", "--transport", "http", "--port", str(port), "--token", token],
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    while True:  # wait until the port accepts connections
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(f"search server exited: {proc.stderr.read().decode()[-2000:]}") from None  # type: ignore[union-attr]
            if time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError("search server did not start in 60 s") from None
            time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}/mcp", token
    finally:
        proc.terminate()
        proc.wait(timeout=10)


async def test_arpo_servers_and_a_third_party_server_in_one_config(
    tmp_path: Path, search_over_http: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, token = search_over_http
    monkeypatch.setenv("ARPO_TEST_SEARCH_TOKEN", token)
    config = tmp_path / "mcp.json"
    config.write_text(
        json.dumps(
            {
                "mcpServers": {
                    "python": {"command": ARPO, "args": ["tools", "serve", "python"]},
                    "search": {"url": url, "headers": {"Authorization": "Bearer ${ARPO_TEST_SEARCH_TOKEN}"}},
                    "mine": {"command": sys.executable, "args": [ECHO]},
                }
            }
        )
    )
    async with MCPToolClient.from_file(config) as tools:
        names = {s.name: s.server for s in await tools.list_tools()}
        assert names["python"] == "python" and names["search"] == "search" and names["add"] == "mine"
        ran = await tools.call_tool("python", {"code": "print(6 * 7)"})
        assert not ran.is_error and ran.text.strip().startswith("42")
        found = await tools.call_tool("search", {"query": "capital"})
        assert not found.is_error and found.text.strip()
        assert (await tools.call_tool("add", {"a": 1, "b": 1})).text == "2"
