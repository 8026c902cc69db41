"""Degraded isolation: the server as "root" inside a user namespace (as in many containers), over stdio.

There it cannot switch to another uid, nor ``setns`` back to the host's PID namespace: the layer report must
say so, and the layers that remain (the zygote becomes PID 1 of its own PID namespace) must still stop the
attacks that would otherwise reach the server: killing it, the network, writing to the host.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import AsyncIterator

import pytest
from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

SERVER = """
from arpo_tools.python_tool.config import PythonToolConfig
from arpo_tools.python_tool.server import build_server
build_server(PythonToolConfig(timeout_s=2, cpu_seconds=2, memory_mb=256, scratch_mb=8, prefork=1)).run("stdio")
"""


def user_namespaces_work() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "--user", "--map-root-user", "true"], capture_output=True, check=False)
    return probe.returncode == 0


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
async def session() -> AsyncIterator[ClientSession]:
    if not user_namespaces_work():
        pytest.skip("unprivileged user namespaces are not available here")
    argv = ["--user", "--map-root-user", sys.executable, "-c", SERVER]
    params = StdioServerParameters(command="unshare", args=argv, env={"ARPO_FAKE_SECRET": "degraded-secret"})
    with tempfile.TemporaryFile("w+") as errlog:
        async with stdio_client(params, errlog=errlog) as (read, write), ClientSession(read, write) as connected:
            await connected.initialize()
            yield connected


async def run(session: ClientSession, code: str) -> tuple[str, bool]:
    result = await session.call_tool("python", {"code": code})
    block = result.content[0]
    assert block.type == "text"
    return block.text, bool(result.is_error)


async def test_the_report_says_what_is_off_and_why(session: ClientSession) -> None:
    text = (await session.read_resource("sandbox://layers")).contents[0].text  # type: ignore[union-attr]
    lines = {line.split("] ", 1)[1].split(":", 1)[0]: line for line in text.splitlines()}
    assert lines["unprivileged-uid"].startswith("[off]") and "Operation not permitted" in lines["unprivileged-uid"]
    assert lines["pid-namespace"].startswith("[on ]") and "PID 1 of its own namespace" in lines["pid-namespace"]
    for name in ("network-namespace", "read-only-root", "scratch-tmpfs", "no-capabilities", "no-new-privs"):
        assert lines[name].startswith("[on ]"), lines[name]


async def test_what_remains_still_holds(session: ClientSession) -> None:
    code = """
        import os, signal, socket
        try:
            os.kill(-1, signal.SIGKILL)  # as uid 0, the server's own uid: only the PID namespace stops this
        except OSError as err:
            print("kill -1:", type(err).__name__)
        try:
            socket.create_connection(("127.0.0.1", 22), timeout=1)
        except OSError as err:
            print("no network:", type(err).__name__)
        try:
            open("/etc/arpo-degraded", "w")
        except OSError as err:
            print("read-only:", err.strerror)
        print(sorted(int(p) for p in os.listdir("/proc") if p.isdigit()), "ARPO_FAKE_SECRET" in os.environ)
    """
    text, _ = await run(session, textwrap.dedent(code))
    assert text.splitlines() == [
        "kill -1: ProcessLookupError",
        "no network: OSError",
        "read-only: Read-only file system",
        "[1] False",
    ], text
    assert await run(session, "print(6 * 7)") == ("42", False)  # the server and its zygote are still there
