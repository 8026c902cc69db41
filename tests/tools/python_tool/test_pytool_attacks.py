"""The attack suite: hostile code against the python tool over a real MCP stdio transport. Zero escapes.

The server runs as its own process (``build_server(...).run("stdio")``) with a fake secret in its environment;
each attack is followed by a normal call that must still succeed. Whatever an attack leaves running is found by
its process name (``prctl(PR_SET_NAME)``) in the host's /proc and must be gone once the call has returned.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import tempfile
import textwrap
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anyio
import pytest
from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client

pytestmark = pytest.mark.anyio

SECRET = f"s3cr3t-{uuid.uuid4().hex}"
TIMEOUT_S = 2
MAX_PROCESSES = 32
SERVER = f"""
from arpo_tools.python_tool.config import PythonToolConfig
from arpo_tools.python_tool.server import build_server
config = PythonToolConfig(timeout_s={TIMEOUT_S}, cpu_seconds={TIMEOUT_S}, memory_mb=256,
    max_processes={MAX_PROCESSES}, scratch_mb=8, max_output_bytes=4096, max_concurrent=4, prefork=2)
build_server(config).run("stdio")
"""


def named(name: str, body: str) -> str:
    """``body`` (dedented) run by a process renamed ``name``, so the test can find it and its children."""
    rename = f"import ctypes\nctypes.CDLL(None).prctl(15, b'{name}', 0, 0, 0)\n"
    return rename + textwrap.dedent(body)


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
async def session() -> AsyncIterator[ClientSession]:
    secrets = {"ARPO_FAKE_SECRET": SECRET, "ARPO_TOOLS_TOKEN": SECRET}
    params = StdioServerParameters(command=sys.executable, args=["-c", SERVER], env=secrets)
    with tempfile.TemporaryFile("w+") as errlog:
        async with stdio_client(params, errlog=errlog) as (read, write), ClientSession(read, write) as connected:
            await connected.initialize()
            yield connected


async def run(session: ClientSession, code: str) -> tuple[str, bool]:
    result = await session.call_tool("python", {"code": textwrap.dedent(code)})
    block = result.content[0]
    assert block.type == "text"
    return block.text, bool(result.is_error)


async def healthy(session: ClientSession) -> None:
    assert await run(session, "print(6 * 7)") == ("42", False)


def processes_named(comm: str) -> list[int]:
    found = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError), open(f"/proc/{entry}/comm") as handle:
            if handle.read().strip() == comm:
                found.append(int(entry))
    return found


async def assert_gone(comm: str, within: float = 5.0) -> None:
    with anyio.fail_after(within):
        while processes_named(comm):  # noqa: ASYNC110 - polling other processes' death; no event to wait on
            await anyio.sleep(0.02)


def environ_of(pid: int) -> bytes:
    return Path(f"/proc/{pid}/environ").read_bytes()


def parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def server_processes() -> tuple[int, int, int]:
    """The server (found by the secret in its environment), its relay, and the zygote (the relay's child)."""
    pids = [int(entry) for entry in os.listdir("/proc") if entry.isdigit()]
    parents: dict[int, int] = {}
    server = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            parents[pid] = parent_of(pid)
            if SECRET.encode() in environ_of(pid) and Path(f"/proc/{pid}/cmdline").read_bytes().startswith(
                sys.executable.encode()
            ):
                server = pid
    relay = next(pid for pid, parent in parents.items() if parent == server and server)
    zygote = next(pid for pid, parent in parents.items() if parent == relay)
    assert b"arpo_tools.python_tool.relay" in Path(f"/proc/{relay}/cmdline").read_bytes()
    return server, relay, zygote


@pytest.fixture
def host_targets() -> Iterator[list[Path]]:
    """Host paths the sandbox must not be able to create, one in a directory writable by anyone."""
    target = Path(tempfile.mkdtemp(prefix="arpo-attack-", dir="/var/tmp"))
    target.chmod(0o777)  # only the read-only mount stands in the way
    marker = f"arpo-{uuid.uuid4().hex}"
    paths = [target / marker, Path("/etc") / marker, Path(__file__).parent / marker, Path("/dev/shm") / marker]
    paths += [Path("/tmp") / marker, Path.home() / marker, Path("/var/tmp") / marker]
    yield paths
    for path in paths:
        with contextlib.suppress(OSError):
            path.unlink()
    target.rmdir()


def existing(paths: list[Path]) -> list[Path]:
    return [path for path in paths if path.exists()]


async def test_fork_bomb(session: ClientSession) -> None:
    bounded = named(
        "arpo-bomb",
        """
        import os, time
        forked = 0
        for _ in range(1000):
            try:
                pid = os.fork()
            except OSError as err:
                print("refused:", type(err).__name__)
                break
            if pid == 0:
                time.sleep(60)
                os._exit(0)
            forked += 1
        print("forked", forked)
        """,
    )
    text, _ = await run(session, bounded)
    refused, forked = text.splitlines()
    assert refused == "refused: BlockingIOError"
    assert 0 < int(forked.split()[1]) < MAX_PROCESSES
    await assert_gone("arpo-bomb")
    await healthy(session)
    endless = named(
        "arpo-bomb2",
        """
        import os
        while True:
            try:
                os.fork()
            except OSError:
                pass
        """,
    )
    text, is_error = await run(session, endless)
    assert is_error and "timed out" in text
    await assert_gone("arpo-bomb2")
    await healthy(session)


async def test_memory_bomb(session: ClientSession) -> None:
    text, is_error = await run(session, "chunks = []\nwhile True:\n    chunks.append(bytearray(50 * 2**20))")
    assert is_error and "MemoryError" in text
    await healthy(session)
    text, is_error = await run(session, "import numpy\nnumpy.ones(10**10)")
    assert is_error and "MemoryError" in text
    await healthy(session)
    # Eight processes, each under its own address-space limit, together far over the call's memory (cgroup).
    spread = """
        import os
        pids = []
        for _ in range(8):
            pid = os.fork()
            if pid == 0:
                block = b"x" * (200 * 2**20)
                os._exit(0)
            pids.append(pid)
        print(sorted(os.waitstatus_to_exitcode(os.waitpid(p, 0)[1]) for p in pids))
    """
    text, _ = await run(session, spread)
    assert "-9" in text or "memory limit" in text or "MemoryError" in text, text
    await healthy(session)


async def test_cpu_burn(session: ClientSession) -> None:
    start = time.monotonic()
    text, is_error = await run(session, "while True:\n    pass")
    assert is_error and ("timed out" in text or "CPU time limit" in text)
    assert time.monotonic() - start < TIMEOUT_S + 3
    await healthy(session)
    burners = named(
        "arpo-burn",
        """
        import os
        for _ in range(4):
            if os.fork() == 0:
                while True:
                    pass
        os.wait()
        """,
    )
    text, is_error = await run(session, burners)
    assert is_error and "timed out" in text
    await assert_gone("arpo-burn")
    await healthy(session)


async def test_sleeping_past_the_timeout(session: ClientSession) -> None:
    text, is_error = await run(session, named("arpo-sleeper", "import time\ntime.sleep(3600)"))
    assert (text, is_error) == (f"[timed out after {TIMEOUT_S} s; the process was killed]", True)
    await assert_gone("arpo-sleeper")
    await healthy(session)


async def test_no_network_not_even_loopback(session: ClientSession) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    abstract = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    name = f"\0arpo-attack-{uuid.uuid4().hex}"
    abstract.bind(name)
    abstract.listen()
    code = f"""
        import socket
        for target in [("127.0.0.1", {port}), ("1.1.1.1", 53), ("::1", {port})]:
            try:
                socket.create_connection(target, timeout=1)
                print("CONNECTED", target)
            except OSError as err:
                print("refused", type(err).__name__)
        unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            unix.connect({name!r})
            print("CONNECTED abstract")
        except OSError as err:
            print("refused", type(err).__name__)
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            udp.sendto(b"x", ("8.8.8.8", 53))
            print("SENT udp")
        except OSError as err:
            print("refused", type(err).__name__)
    """
    try:
        text, _ = await run(session, code)
        assert text.count("refused") == 5 and "CONNECTED" not in text and "SENT" not in text, text
        listener.setblocking(False)
        abstract.setblocking(False)
        with pytest.raises(BlockingIOError):
            listener.accept()  # nothing ever reached the listening sockets
        with pytest.raises(BlockingIOError):
            abstract.accept()
    finally:
        listener.close()
        abstract.close()
    await healthy(session)


async def test_no_writes_outside_the_scratch_directory(session: ClientSession, host_targets: list[Path]) -> None:
    code = f"""
        for path in {[str(p) for p in host_targets]!r}:
            try:
                open(path, "w").write("pwned")
                print("WROTE", path)
            except OSError as err:
                print("refused", type(err).__name__)
        open("/tmp/ok.txt", "w").write("scratch works")
        print(open("/tmp/ok.txt").read())
        try:
            open("/tmp/big", "wb").write(b"x" * (20 * 2**20))
            print("WROTE big")
        except OSError as err:
            print("refused big", err.strerror)
    """
    text, _ = await run(session, code)
    assert "scratch works" in text and "refused big" in text, text
    assert existing(host_targets) == [], text  # /tmp and /dev/shm writes landed in the call's private tmpfs
    assert "WROTE /etc" not in text and "WROTE /var/tmp" not in text
    await healthy(session)


async def test_the_servers_environment_does_not_leak(session: ClientSession) -> None:
    code = """
        import glob, os
        print(dict(os.environ))
        for path in glob.glob("/proc/*/environ") + glob.glob("/proc/*/task/*/environ"):
            try:
                print(path, open(path, "rb").read())
            except OSError as err:
                print(path, type(err).__name__)
    """
    text, _ = await run(session, code)
    assert SECRET not in text
    assert "ARPO_FAKE_SECRET" not in text and "ARPO_TOOLS_TOKEN" not in text
    server, relay, zygote = server_processes()
    code = f"""
        for pid in ({server}, {relay}, {zygote}):
            try:
                print(open(f"/proc/{{pid}}/environ", "rb").read())
            except OSError as err:
                print(type(err).__name__)
    """
    text, _ = await run(session, code)
    assert SECRET not in text
    assert SECRET.encode() not in environ_of(relay)  # not even the processes calls come from have it
    assert SECRET.encode() not in environ_of(zygote)
    await healthy(session)


async def test_killing_the_parent_fails(session: ClientSession) -> None:
    server, relay, zygote = server_processes()
    code = f"""
        import os, signal, subprocess
        for target in (os.getppid(), {server}, {relay}, {zygote}, 1):
            try:
                os.kill(target, signal.SIGKILL)
            except OSError as err:
                print(type(err).__name__)
        subprocess.run(["kill", "-9", "-1"])
        os.kill(-1, signal.SIGKILL)
        os.killpg(os.getpgid(0), signal.SIGKILL)
        print("still here")
    """
    bystander: list[tuple[str, bool]] = []

    async def concurrent_call() -> None:
        bystander.append(await run(session, "import time\ntime.sleep(1)\nprint('bystander survived')"))

    async with anyio.create_task_group() as group:
        group.start_soon(concurrent_call)
        await anyio.sleep(0.3)
        await run(session, code)
    assert bystander == [("bystander survived", False)]  # another call, running meanwhile, was out of reach
    assert server_processes() == (server, relay, zygote)  # the same processes, alive
    await healthy(session)


async def test_no_daemon_outlives_its_call(session: ClientSession) -> None:
    code = """
        import ctypes, os, signal, time
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                ctypes.CDLL(None).prctl(15, b"arpo-daemon", 0, 0, 0)
                signal.signal(signal.SIGTERM, signal.SIG_IGN)
                signal.signal(signal.SIGHUP, signal.SIG_IGN)
                time.sleep(3600)
            os._exit(0)
        time.sleep(0.2)
        print("started")
    """
    assert await run(session, code) == ("started", False)
    await assert_gone("arpo-daemon")
    await healthy(session)


async def test_huge_output(session: ClientSession) -> None:
    text, is_error = await run(session, "print('x' * 10**8)")
    assert not is_error and text.endswith("[output truncated after 4096 bytes; 100000001 bytes were printed]")
    assert len(text) < 4096 + 200
    text, is_error = await run(session, "while True:\n    print('spam' * 1000)")
    assert is_error and "output truncated after 4096 bytes" in text and "timed out" in text
    assert len(text) < 4096 + 300
    await healthy(session)


async def test_deep_recursion(session: ClientSession) -> None:
    text, is_error = await run(session, "def f(n):\n    return f(n + 1)\nf(0)")
    assert is_error and "RecursionError: maximum recursion depth exceeded" in text
    assert len(text.splitlines()) <= 25  # the traceback's tail only
    await healthy(session)
    # With the limit lifted, 3.11 grows its frames on the heap: the address-space limit or the clock ends it.
    text, is_error = await run(
        session, "import sys\nsys.setrecursionlimit(10**8)\ndef f(n):\n    return f(n + 1)\nf(0)"
    )
    assert is_error and any(end in text for end in ("SIGSEGV", "MemoryError", "RecursionError", "timed out")), text
    await healthy(session)


async def test_no_privileges_and_nothing_inherited(session: ClientSession) -> None:
    code = """
        import os
        status = dict(line.split(":", 1) for line in open("/proc/self/status"))
        print(status["NoNewPrivs"].strip(), status["CapEff"].strip(), os.getuid() != 0)
        print(sorted(os.listdir("/proc/self/fd")))
        print(sorted(int(p) for p in os.listdir("/proc") if p.isdigit()))
        for attempt in (lambda: os.setuid(0), lambda: open("/etc/shadow").read()):
            try:
                attempt()
            except OSError as err:
                print(type(err).__name__)
    """
    text, _ = await run(session, code)
    privileges, fds, pids, *refusals = text.splitlines()
    assert privileges == "1 0000000000000000 True"
    assert fds == "['0', '1', '2', '3', '4']"  # stdin, stdout, stderr, the control socket, listdir's own
    assert pids == "[1]"  # its own PID namespace: nothing else to see
    assert refusals == ["PermissionError", "PermissionError"]
    await healthy(session)


async def test_python_dash_m_serves_the_default_config() -> None:
    params = StdioServerParameters(command=sys.executable, args=["-m", "arpo_tools.python_tool"])
    with tempfile.TemporaryFile("w+") as errlog:
        async with stdio_client(params, errlog=errlog) as (read, write), ClientSession(read, write) as connected:
            await connected.initialize()
            tools = await connected.list_tools()
            assert [tool.name for tool in tools.tools] == ["python"]
            assert "30 s wall clock" in (tools.tools[0].description or "")
            assert await run(connected, "import numpy\nprint(numpy.arange(5).sum())") == ("10", False)
