"""Runs one call's code inside a sandbox that ``enter_sandbox`` has set up (child side of the zygote).

Reads the request from the control socket (fd 3): a 4-byte big-endian length, then JSON ``{"code", "cpu_s"}``.
Runs the code the way ``python -c`` would: as ``__main__``, ``sys.argv == ["-c"]``, stdin empty, stdout and
stderr line-buffered (so what was printed before a timeout still reaches the model), a traceback on stderr whose
frames are the code's own (with its source lines), ``sys.exit`` honoured, ``atexit`` handlers run.

Protections: the CPU limit is lowered to what the call asked for; random generators inherited from the zygote
are reseeded (otherwise every call would draw the same ``numpy.random`` numbers); only the process that started
the call reports its exit status (``exit N`` on fd 3), so a forked child finishing the code cannot end the call
early for its parent.
"""

from __future__ import annotations

import atexit
import builtins
import contextlib
import json
import linecache
import os
import struct
import sys
import traceback
import types
from typing import NoReturn

from arpo_tools.python_tool.limits import lower_cpu_limit

__all__ = ["CONTROL_FD", "FILENAME", "run_call", "warm_up"]

CONTROL_FD = 3
FILENAME = "<code>"


def _read_exact(fd: int, size: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = os.read(fd, size - len(chunks))
        if not chunk:
            raise EOFError("the zygote closed the control socket")
        chunks += chunk
    return bytes(chunks)


def _exit_code(exc: SystemExit) -> int:
    code = exc.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


def _reseed() -> None:
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        numpy.random.seed()


def warm_up() -> None:
    """Run, in the zygote, the first-time work every call would otherwise repeat after its fork.

    (``numpy.random.seed()`` alone costs ≈ 2,000 page faults, ≈ 20 ms, the first time it runs in a process.)
    """
    _reseed()
    try:
        exec(compile("1 / 0", FILENAME, "exec"), {})
    except ZeroDivisionError as exc:
        traceback.format_exception(type(exc), exc, exc.__traceback__)


def _prepare() -> dict[str, object]:
    """Everything that does not depend on the code, done before the request arrives (off the call's latency).

    Each first write to a page shared with the zygote costs a copy-on-write fault (≈ 8 µs here); doing this work
    while the sandbox waits in the pool takes ≈ 1 ms off every call.
    """
    _reseed()
    sys.stdin = open(0, closefd=False)  # noqa: SIM115  (fd 0 is /dev/null; lives until the process exits)
    sys.stdout = open(1, "w", encoding="utf-8", errors="backslashreplace", buffering=1, closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", encoding="utf-8", errors="backslashreplace", buffering=1, closefd=False)  # noqa: SIM115
    sys.argv = ["-c"]
    sys.dont_write_bytecode = True
    main = types.ModuleType("__main__")
    main.__dict__["__builtins__"] = builtins
    sys.modules["__main__"] = main
    exec(compile("_ = [str(i) for i in range(3)]", FILENAME, "exec"), {})  # warm the compiler's pages
    return main.__dict__


def _run(code: str, namespace: dict[str, object]) -> int:
    linecache.cache[FILENAME] = (len(code), None, code.splitlines(keepends=True), FILENAME)
    try:
        exec(compile(code, FILENAME, "exec"), namespace)
    except SystemExit as exc:
        return _exit_code(exc)
    except BaseException as exc:
        # Drop this frame: the model should see its own code only.
        traceback.print_exception(type(exc), exc, exc.__traceback__.tb_next if exc.__traceback__ else None)
        return 1
    return 0


def run_call() -> NoReturn:
    """Get ready, wait for the request, run it, report, exit. Never returns."""
    started_by = os.getpid()
    status = 1
    try:
        namespace = _prepare()
        (size,) = struct.unpack(">I", _read_exact(CONTROL_FD, 4))
        request = json.loads(_read_exact(CONTROL_FD, size))
        lower_cpu_limit(float(request["cpu_s"]))
        status = _run(str(request["code"]), namespace)
        try:
            atexit._run_exitfuncs()
        except BaseException:  # an atexit handler's error is the code's, not ours
            traceback.print_exc()
    except BaseException as err:  # our own failure before the code ran: say so, never silently
        os.write(2, f"sandbox error: {type(err).__name__}: {err}\n".encode())
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(BaseException):  # a closed pipe: nothing left to tell anyone
                stream.flush()
        if os.getpid() == started_by:
            with contextlib.suppress(OSError):
                os.write(CONTROL_FD, f"exit {status}\n".encode())
        os._exit(status)
