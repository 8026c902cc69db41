"""What a slot keeps between its calls, and what it must not: the mechanisms that make a call cheap.

A slot (uid, cgroups, network namespace) is set up once when the zygote starts and reused by one call at a time;
with ``max_concurrent=1`` and ``prefork=0`` there is a single slot, so every call below runs in the same one (the
tests check it: same uid, same network namespace). Also here: the two zygotes (light and full) and how calls are
routed between them, the generators reseeded in every call, threads in a call (sandboxes are forked without
``os.fork``'s callbacks), and the thread-free stdio transport.
"""

from __future__ import annotations

import ast
import glob
import os
import pathlib
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import uuid
from collections.abc import AsyncIterator

import anyio
import pytest

from arpo_tools.python_tool.limits import SandboxLimits
from arpo_tools.python_tool.relay import Relay
from arpo_tools.python_tool.stdio import _LineReader
from arpo_tools.python_tool.supervisor import PythonSandbox

pytestmark = pytest.mark.anyio

ONE_SLOT = SandboxLimits(timeout_s=5, cpu_seconds=5, memory_mb=128, max_processes=16, max_concurrent=1, prefork=0)


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
async def one_slot() -> AsyncIterator[PythonSandbox]:
    assert ONE_SLOT.slots == 1
    async with PythonSandbox(ONE_SLOT) as sandbox:
        yield sandbox


async def run(sandbox: PythonSandbox, code: str) -> str:
    outcome = await sandbox.run(textwrap.dedent(code))
    assert outcome.setup_error is None, outcome
    return outcome.stdout


IDENTITY = 'import os\nprint(os.getuid(), os.readlink("/proc/self/ns/net"), open("/proc/self/cgroup").read().split())\n'


async def test_successive_calls_in_one_slot_share_nothing(one_slot: PythonSandbox) -> None:
    marker = f"arpo-{uuid.uuid4().hex[:12]}"
    first = IDENTITY + textwrap.dedent(f"""
        import ctypes, socket, time
        open("/tmp/{marker}", "w").write("x")
        open("/dev/shm/{marker}", "w").write("x")
        listener = socket.socket(socket.AF_UNIX)
        listener.bind("\\0{marker}")
        listener.listen()
        tcp = socket.socket()
        tcp.bind(("0.0.0.0", 4567))
        tcp.listen()
        libc = ctypes.CDLL(None, use_errno=True)
        print("shm", libc.shmget(0x4152504F, 4096, 0o1666))  # IPC_CREAT | 0666, left behind on purpose
        if os.fork() == 0:
            os.setsid()
            ctypes.CDLL(None).prctl(15, b"{marker[:15]}", 0, 0, 0)
            time.sleep(60)
        print("left things behind")
    """)
    second = IDENTITY + textwrap.dedent(f"""
        import ctypes, socket
        print(sorted(os.listdir("/tmp")), sorted(os.listdir("/dev/shm")))
        print(sorted(int(p) for p in os.listdir("/proc") if p.isdigit()))
        libc = ctypes.CDLL(None, use_errno=True)
        print("shm", libc.shmget(0x4152504F, 4096, 0o666), ctypes.get_errno())  # ENOENT: 2
        for target in ("\\0{marker}",):
            try:
                socket.socket(socket.AF_UNIX).connect(target)
                print("CONNECTED")
            except OSError as err:
                print(type(err).__name__)
        try:
            socket.create_connection(("127.0.0.1", 4567), timeout=1)
            print("CONNECTED")
        except OSError as err:
            print(type(err).__name__)
    """)
    one = (await run(one_slot, first)).splitlines()
    assert one[1].startswith("shm ") and int(one[1].split()[1]) >= 0 and one[2] == "left things behind", one
    two = (await run(one_slot, second)).splitlines()
    assert one[0] == two[0], "not the same slot: same uid, network namespace and cgroups expected"
    assert two[1:] == ["[] []", "[1]", "shm -1 2", "ConnectionRefusedError", "OSError"], two
    assert not [pid for pid in os.listdir("/proc") if pid.isdigit() and _comm(pid) == marker[:15]]


async def test_a_reused_network_namespace_still_has_no_network(one_slot: PythonSandbox) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    code = f"""
        import fcntl, socket, struct
        for target in [("127.0.0.1", {port}), ("10.0.0.1", 53)]:
            try:
                socket.create_connection(target, timeout=1)
                print("CONNECTED")
            except OSError as err:
                print(type(err).__name__)
        try:  # SIOCSIFFLAGS lo IFF_UP: the loopback stays down
            fcntl.ioctl(socket.socket(), 0x8914, struct.pack("16sH14x", b"lo", 1))
            print("LOOPBACK UP")
        except OSError as err:
            print(type(err).__name__)
        print(open("/proc/net/dev").read().count(":"))  # interfaces in this namespace: lo only
    """
    try:
        for _ in range(3):  # the same namespace each time: nothing a call tries carries over
            assert (await run(one_slot, code)).splitlines() == ["OSError", "OSError", "PermissionError", "1"]
        listener.setblocking(False)
        with pytest.raises(BlockingIOError):
            listener.accept()
    finally:
        listener.close()


async def test_cgroup_limits_bind_on_every_use_of_a_slot(one_slot: PythonSandbox) -> None:
    active = {layer.name for layer in await one_slot.layers() if layer.active}
    if not {"cgroup-pids", "cgroup-memory"} <= active:
        pytest.skip("no cgroups here")
    bomb = """
        import os, time
        forked = 0
        try:
            while forked < 1000:
                if os.fork() == 0:
                    time.sleep(30)
                    os._exit(0)
                forked += 1
        except OSError as err:
            print(type(err).__name__, forked)
    """
    spread = """
        import os
        pids = []
        for _ in range(4):
            pid = os.fork()
            if pid == 0:
                block = b"x" * (120 * 2**20)
                os._exit(0)
            pids.append(pid)
        print(sorted(os.waitstatus_to_exitcode(os.waitpid(p, 0)[1]) for p in pids))
    """
    for _ in range(2):
        name, forked = (await run(one_slot, bomb)).split()
        assert name == "BlockingIOError" and 0 < int(forked) < ONE_SLOT.max_processes
        outcome = await one_slot.run(textwrap.dedent(spread))  # 480 MB together: over the cgroup memory limit
        assert "-9" in outcome.stdout or outcome.oom_killed, outcome
        cgroups = await run(one_slot, IDENTITY)
        assert re.search(r":pids:/\S*/slot-0'", cgroups) and re.search(r":memory:/\S*/slot-0'", cgroups), cgroups


async def test_concurrent_calls_get_their_own_slot_and_network_namespace() -> None:
    limits = SandboxLimits(timeout_s=5, max_concurrent=2, prefork=0)
    code = IDENTITY + "import time\ntime.sleep(0.5)"
    async with PythonSandbox(limits) as sandbox:
        seen: list[str] = []

        async def one() -> None:
            seen.append(await run(sandbox, code))

        async with anyio.create_task_group() as group:
            group.start_soon(one)
            group.start_soon(one)
    uids, namespaces = {line.split()[0] for line in seen}, {line.split()[1] for line in seen}
    assert len(uids) == 2 and len(namespaces) == 2, seen


async def test_calls_naming_a_full_only_module_run_in_the_full_zygote(one_slot: PythonSandbox) -> None:
    check = 'import sys\nprint("sym" + "py" in sys.modules, "numpy" in sys.modules)'
    assert await run(one_slot, check) == "False True\n"  # the light zygote: numpy preloaded, no sympy
    assert await run(one_slot, "import sympy\n" + check) == "True True\n"
    assert await run(one_slot, "# sympy\n" + check) == "True True\n"
    outcome = await one_slot.run("import importlib\nprint(importlib.import_module('sym' + 'py').Integer(6))")
    assert outcome.stdout == "6\n"  # from the light zygote too, only slower


_TMP_VENV_SCRIPT = """
import anyio, sys
from arpo_tools.python_tool.limits import SandboxLimits
from arpo_tools.python_tool.supervisor import PythonSandbox

async def main() -> None:
    limits = SandboxLimits(timeout_s=10, cpu_seconds=10, max_concurrent=1, prefork=0)
    async with PythonSandbox(limits) as sandbox:
        for code in sys.argv[1:]:
            outcome = await sandbox.run(code)
            print(repr((outcome.stdout, outcome.setup_error, "Error" in outcome.stderr)), flush=True)

anyio.run(main)
"""


def test_a_venv_under_tmp_stays_importable_and_read_only() -> None:
    # A fresh venv in a folder of /tmp (where CI clones and containers put theirs), holding a module of its own and
    # reaching this venv's packages through a .pth: each call's scratch tmpfs on /tmp used to hide it.
    scratch = tempfile.mkdtemp(prefix="arpo-venv-", dir="/tmp")
    try:
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", f"{scratch}/venv"], check=True)
        (site_packages,) = glob.glob(f"{scratch}/venv/lib/python*/site-packages")
        ours = next(p for p in sys.path if p.endswith("site-packages") and os.path.isdir(p))
        with open(f"{site_packages}/arpo_parent.pth", "w") as pth:
            pth.write(f"import site; site.addsitedir({ours!r})\n")
        with open(f"{site_packages}/arpo_tmp_probe.py", "w") as module:
            module.write("VALUE = 6\n")
        calls = [
            "import sympy, arpo_tmp_probe\nprint(sympy.Integer(arpo_tmp_probe.VALUE) * 7)",  # the full zygote
            "import arpo_tmp_probe\nprint(arpo_tmp_probe.VALUE)",  # the light zygote
            "import arpo_tmp_probe\nopen(arpo_tmp_probe.__file__, 'a').write('VALUE = 0')",  # venv: read-only
            "open('/tmp/note', 'w').write('x')\nprint(open('/tmp/note').read())",  # scratch: still writable
        ]
        done = subprocess.run(
            [f"{scratch}/venv/bin/python", "-c", _TMP_VENV_SCRIPT, *calls],
            capture_output=True,
            text=True,
            timeout=120,
            cwd="/",
        )
        assert done.returncode == 0, done.stderr
        results = [ast.literal_eval(line) for line in done.stdout.splitlines()]
        assert results == [("42\n", None, False), ("6\n", None, False), ("", None, True), ("x\n", None, False)]
        assert pathlib.Path(site_packages, "arpo_tmp_probe.py").read_text() == "VALUE = 6\n"
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def test_routing_matches_whole_module_names() -> None:
    sockets = [socket.socket() for _ in range(5)]
    try:
        relay = Relay(sockets[0], sockets[1:3], SandboxLimits())
        light, full = relay.links
        assert relay._route("import sympy") is full
        assert relay._route("from sympy.abc import x") is full
        assert relay._route("x = sympyish + 1; import numpy") is light
        assert relay._route("print(1)") is light
        single = Relay(sockets[3], sockets[4:], SandboxLimits(light_preload=()))
        assert single._route("import sympy") is single.links[0]
    finally:
        for sock in sockets:
            sock.close()


async def test_every_call_draws_other_random_numbers(one_slot: PythonSandbox) -> None:
    code = """
        import random, numpy, sympy
        print(random.random(), numpy.random.random(), numpy.random.normal(), sympy.core.random.rng.random())
    """
    light = "import random, numpy\nprint(random.random(), numpy.random.random(), numpy.random.normal())"
    draws = [await run(one_slot, code) for _ in range(3)] + [await run(one_slot, light) for _ in range(3)]
    assert len(set(draws)) == len(draws), draws


async def test_threads_work_in_a_call(one_slot: PythonSandbox) -> None:
    code = """
        import threading
        from concurrent.futures import ThreadPoolExecutor
        with ThreadPoolExecutor(4) as pool:
            print(sum(pool.map(lambda n: n * n, range(100))))
        current = threading.current_thread()
        print(current is threading.main_thread(), current.native_id == threading.get_native_id())
        print(threading.active_count())
    """
    assert (await run(one_slot, code)).splitlines() == ["328350", "True True", "1"]


async def test_the_stdio_line_reader_handles_split_and_unterminated_lines() -> None:
    read_end, write_end = os.pipe()
    os.set_blocking(read_end, False)
    reader = _LineReader(read_end)
    lines: list[str] = []

    async def collect() -> None:
        lines.extend([line async for line in reader])

    async with anyio.create_task_group() as group:
        group.start_soon(collect)
        for part in (b'{"a": ', b'1}\n{"b"', b": 2}\n\xc3", b"\xa9 no newline"):
            os.write(write_end, part)
            await anyio.sleep(0.01)
        os.close(write_end)
    os.close(read_end)
    assert lines == ['{"a": 1}\n', '{"b": 2}\n', "\u00e9 no newline"]


def _comm(pid: str) -> str:
    try:
        with open(f"/proc/{pid}/comm") as handle:
            return handle.read().strip()
    except OSError:
        return ""


async def test_a_single_zygote_when_light_preload_is_empty() -> None:
    limits = SandboxLimits(timeout_s=5, max_concurrent=1, prefork=1, light_preload=())
    assert limits.full_only == () and limits.slots == 2
    async with PythonSandbox(limits) as sandbox:
        check = 'import sys\nprint("sym" + "py" in sys.modules)'
        assert await run(sandbox, check) == "True\n"  # everything of preload in the one zygote
        assert await run(sandbox, "import sympy\nprint(sympy.Integer(2) ** 10)") == "1024\n"


def _children(pid: int) -> list[int]:
    found = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{entry}/stat") as stat:
                if int(stat.read().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry))
        except (OSError, ValueError):
            continue
    return found


def _running(pid: int) -> bool:
    """Alive and not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _own_pid_namespace(pid: int) -> bool:
    with open(f"/proc/{pid}/status") as status:
        return any(line.startswith("NSpid:") and len(line.split()) > 2 for line in status)


async def test_the_death_of_the_full_zygote_restarts_both() -> None:
    async with PythonSandbox(SandboxLimits(timeout_s=5, max_concurrent=1, prefork=1)) as sandbox:
        assert await run(sandbox, "import sympy\nprint(sympy.Integer(7))") == "7\n"
        light, relay = sandbox.zygote_pid, sandbox.relay_pid
        assert light and relay
        full = [pid for pid in _children(light) if not _own_pid_namespace(pid)]  # sandboxes have their own
        if len(full) != 1:
            pytest.skip("no PID namespaces here: the full zygote cannot be told from a sandbox")
        os.kill(full[0], 9)
        with anyio.fail_after(5):
            while _running(relay):  # noqa: ASYNC110 - polling another process's death; no event to wait on
                await anyio.sleep(0.02)
        outcome = await sandbox.run("import sympy\nprint(sympy.Integer(8))")
        assert outcome.stdout == "8\n" and "restarted" in " ".join(outcome.notes), outcome
        assert sandbox.zygote_pid not in (None, light)
