"""The python tool through the SDK's in-process client: results, limits, statelessness, restarts, cancellation.

Real sandboxes (a real zygote forks every call); only the MCP transport is in memory. The attack suite, over a
real stdio transport, is in ``test_pytool_attacks.py``.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import AsyncIterator

import anyio
import pytest
from mcp import Client

from arpo_tools.python_tool.config import PythonToolConfig
from arpo_tools.python_tool.layers import LAYER_NAMES
from arpo_tools.python_tool.server import build_server

pytestmark = pytest.mark.anyio

CONFIG = PythonToolConfig(
    timeout_s=2, cpu_seconds=2, memory_mb=256, max_processes=32, scratch_mb=8, max_output_bytes=2048,
    max_concurrent=4, prefork=1,
)  # fmt: skip


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
async def client() -> AsyncIterator[Client]:
    server = build_server(CONFIG)
    async with Client(server) as connected:
        connected.sandbox = server.sandbox  # type: ignore[attr-defined]
        yield connected


async def run(client: Client, code: str, **arguments: object) -> tuple[str, bool]:
    result = await client.call_tool("python", {"code": code, **arguments})
    block = result.content[0]
    assert block.type == "text"
    return block.text, bool(result.is_error)


def processes_named(comm: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/comm") as handle:
                    if handle.read().strip() == comm:
                        found.append(int(entry))
            except OSError:
                continue
    return found


def running(pid: int) -> bool:
    """Alive and not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


async def wait_until_gone(comm: str, within: float = 5.0) -> None:
    with anyio.fail_after(within):
        while processes_named(comm):  # noqa: ASYNC110 - polling other processes' death; no event to wait on
            await anyio.sleep(0.02)


SET_NAME = "import ctypes; ctypes.CDLL(None).prctl(15, b'{name}', 0, 0, 0)\n"


async def test_one_tool_named_python_with_a_required_code_argument(client: Client) -> None:
    tools = (await client.list_tools()).tools
    assert [tool.name for tool in tools] == ["python"]
    schema = tools[0].input_schema
    assert schema["required"] == ["code"]
    assert schema["properties"]["code"]["type"] == "string"
    assert "Python 3" in (tools[0].description or "") and "stdout" in (tools[0].description or "")


async def test_stdout_comes_back(client: Client) -> None:
    assert await run(client, "print(6 * 7)") == ("42", False)
    assert await run(client, "x = 1") == ("(no output)", False)
    assert await run(client, "import sympy\nprint(sympy.factorint(360))") == ("{2: 3, 3: 2, 5: 1}", False)


async def test_errors_show_the_end_of_the_traceback(client: Client) -> None:
    text, is_error = await run(client, "def f():\n    return 1 / 0\nprint('before')\nf()")
    assert is_error
    assert text.startswith("before\n[stderr]\nTraceback (most recent call last):")
    assert 'File "<code>", line 4, in <module>' in text
    assert "    return 1 / 0" in text  # the source line is shown
    assert text.endswith("ZeroDivisionError: division by zero\n[exit status 1]")
    assert "zygote" not in text and "runner" not in text  # our frames are not shown
    text, is_error = await run(client, "print(")
    assert is_error and "SyntaxError" in text


async def test_exit_status_and_stderr_warnings(client: Client) -> None:
    assert await run(client, "import sys\nsys.exit(3)") == ("[exit status 3]", True)
    assert await run(client, "raise SystemExit('bye')") == ("[stderr]\nbye\n[exit status 1]", True)
    text, is_error = await run(client, "import warnings\nwarnings.warn('careful')\nprint('done')")
    assert not is_error and text.startswith("done\n[stderr]") and "UserWarning: careful" in text


async def test_timeout_argument_lowers_the_limit_but_cannot_raise_it(client: Client) -> None:
    start = time.monotonic()
    text, is_error = await run(client, "import time\nprint('started', flush=True)\ntime.sleep(30)", timeout=0.5)
    assert is_error and text == "started\n[timed out after 0.5 s; the process was killed]"
    assert time.monotonic() - start < 2
    text, _ = await run(client, "import time\ntime.sleep(30)", timeout=1000)
    assert text == "[timed out after 2 s; the process was killed]"


async def test_huge_output_is_truncated(client: Client) -> None:
    text, is_error = await run(client, "for i in range(100000):\n    print(i)")
    assert not is_error
    assert len(text.encode()) < CONFIG.max_output_bytes + 200
    assert text.endswith("[output truncated after 2048 bytes; 588890 bytes were printed]")


async def test_calls_share_nothing(client: Client) -> None:
    await run(client, "x = 41\nopen('/tmp/note', 'w').write('hi')")
    text, is_error = await run(client, "print(x)")
    assert is_error and "NameError" in text
    # A venv under /tmp (CI's clones) is bound back into each call's scratch: its top folder is all /tmp shows.
    assert await run(client, "import os\nprint(sorted(os.listdir('/tmp')))") == (str(_python_folders_in_tmp()), False)
    first, _ = await run(client, "import numpy, random\nprint(numpy.random.rand(), random.random())")
    second, _ = await run(client, "import numpy, random\nprint(numpy.random.rand(), random.random())")
    assert first != second  # every call reseeds what it inherited from the zygote


def _python_folders_in_tmp() -> list[str]:
    """The first path component below /tmp of every folder this interpreter imports from (sys.prefix, sys.path)."""
    tops = set()
    for entry in [sys.prefix, *sys.path]:
        real = os.path.realpath(entry) if entry else ""
        if real.startswith("/tmp/") and os.path.isdir(real) and real != os.getcwd():
            tops.add(real.split("/")[2])
    return sorted(tops)


async def test_python_semantics_match_python_c(client: Client) -> None:
    code = "import sys\nprint(__name__, sys.argv, sys.stdin.read() == '')"
    assert await run(client, code) == ("__main__ ['-c'] True", False)
    assert await run(client, "print('naïve ✓'); print('no newline', end='')") == ("naïve ✓\nno newline", False)
    text, _ = await run(client, "import sys\nsys.stdout.buffer.write(b'bad \\xff byte\\n')")
    assert text == "bad \ufffd byte"


async def test_code_length_is_bounded(client: Client) -> None:
    text, is_error = await run(client, "#" * (CONFIG.max_code_chars + 1))
    assert is_error and "the limit is 100000" in text


async def test_calls_run_concurrently(client: Client) -> None:
    results: list[tuple[str, bool]] = []

    async def one(i: int) -> None:
        results.append(await run(client, f"import time\ntime.sleep(0.5)\nprint({i})"))

    start = time.monotonic()
    async with anyio.create_task_group() as group:
        for i in range(4):
            group.start_soon(one, i)
    assert sorted(results) == [(str(i), False) for i in range(4)]
    assert time.monotonic() - start < 1.8  # four half-second sleeps, side by side


async def test_layers_resource_names_every_layer(client: Client) -> None:
    contents = (await client.read_resource("sandbox://layers")).contents
    text = contents[0].text  # type: ignore[union-attr]
    names = {line.split("] ", 1)[1].split(":", 1)[0] for line in text.splitlines()}
    assert names == set(LAYER_NAMES) - {"user-namespace"} or names == set(LAYER_NAMES)
    if os.geteuid() == 0:  # as root on Linux (here and in CI) every layer must be on
        assert "[off]" not in text, text


async def test_a_cancelled_call_kills_its_sandbox(client: Client) -> None:
    code = SET_NAME.format(name="arpo-cancelme") + "import time\ntime.sleep(60)"
    with anyio.move_on_after(1.0) as scope:
        await run(client, code)
    assert scope.cancelled_caught
    await wait_until_gone("arpo-cancelme")
    assert await run(client, "print('alive')") == ("alive", False)


async def wait_for_death(pid: int) -> None:
    with anyio.fail_after(5):
        while running(pid):  # noqa: ASYNC110 - polling another process's death; no event to wait on
            await anyio.sleep(0.01)


async def test_a_dead_relay_is_restarted_and_the_result_says_so(client: Client) -> None:
    sandbox = client.sandbox  # type: ignore[attr-defined]
    old = sandbox.relay_pid
    assert old is not None
    os.kill(old, signal.SIGKILL)
    await wait_for_death(old)
    text, is_error = await run(client, "print('back')")
    assert not is_error
    assert text.startswith("back\n[note: the sandbox was restarted (its parent process had exited with status -9)]")
    assert sandbox.relay_pid not in (None, old)
    assert await run(client, "print('again')") == ("again", False)


async def test_a_zygote_dying_mid_call_fails_that_call_only(client: Client) -> None:
    sandbox = client.sandbox  # type: ignore[attr-defined]
    zygote, relay = sandbox.zygote_pid, sandbox.relay_pid
    assert zygote and relay
    outcome: list[tuple[str, bool]] = []

    async def long_call() -> None:
        outcome.append(await run(client, "import time\ntime.sleep(1.5)\nprint('finished')"))

    async with anyio.create_task_group() as group:
        group.start_soon(long_call)
        await anyio.sleep(0.3)
        os.kill(zygote, signal.SIGKILL)
    text, is_error = outcome[0]
    assert is_error and "exited during the call" in text and "run the code again" in text
    await wait_for_death(relay)
    text, is_error = await run(client, "print('back')")
    assert not is_error and text.startswith("back\n[note: the sandbox was restarted")
    assert sandbox.zygote_pid not in (None, zygote)


async def test_missing_preload_is_reported_and_required_layers_are_enforced() -> None:
    config = PythonToolConfig(preload=("math", "no_such_module_here"), required_layers=("no-such-layer",), prefork=0)
    server = build_server(config)
    async with Client(server) as connected:
        text, is_error = await run(connected, "print(1)")
        assert is_error and text == "[sandbox error: required isolation layers are off here: no-such-layer]"
        errors = server.sandbox.preload_errors  # type: ignore[attr-defined]
        assert list(errors) == ["no_such_module_here"] and "ModuleNotFoundError" in errors["no_such_module_here"]
