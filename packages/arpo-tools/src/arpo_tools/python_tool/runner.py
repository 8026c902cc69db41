"""Runs one call's code inside a sandbox that ``enter_sandbox`` has set up (child side of the zygote).

Reads the request from the control socket (fd 3): a 4-byte big-endian length, then JSON ``{"code", "cpu_s"}``.
Runs the code the way ``python -c`` would: as ``__main__``, ``sys.argv == ["-c"]``, stdin empty, stdout and
stderr line-buffered (so what was printed before a timeout still reaches the model), a traceback on stderr whose
frames are the code's own (with its source lines), ``sys.exit`` honoured, ``atexit`` handlers run.

Protections: the CPU limit is lowered to what the call asked for; random generators inherited from the zygote
are reseeded from the OS (otherwise every call would draw the same numbers: ``random``, every module-level
``random.Random`` of the preloaded modules such as sympy's, and ``numpy.random``'s global state); only the process
that started the call reports its exit status (``exit N`` on fd 3), so a forked child finishing the code cannot end
the call early for its parent.

Cost: whatever the zygote can build once (the ``sys.std*`` objects, the ``__main__`` module, the list of generators
to reseed, a writable view of numpy's Mersenne-Twister key) it builds in ``warm_up``; after the fork each call only
installs them. Every page a call writes is a copy-on-write fault, so this takes ≈ 200 faults (≈ 1 ms of CPU) off
every call.
"""

from __future__ import annotations

import atexit
import builtins
import contextlib
import ctypes
import json
import linecache
import os
import random
import struct
import sys
import traceback
import types
from typing import Any, ClassVar, NoReturn

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


_MT_KEY_BYTES = 624 * 4
_MT_STATE_BYTES = _MT_KEY_BYTES + 4  # numpy's mt19937_state: uint32_t key[624]; int pos


class _Prepared:
    """What ``warm_up`` builds in the zygote for every call (each call's process installs its own copy)."""

    stdio: tuple[Any, Any, Any] | None = None
    main: types.ModuleType | None = None
    generators: ClassVar[list[random.Random]] = []
    numpy_state: memoryview | None = None
    """Writable view of numpy's global MT19937 state (key, then pos), where it could be checked; else None."""
    pos_end = (624).to_bytes(4, sys.byteorder)


def _module_generators() -> list[random.Random]:
    """Every ``random.Random`` at module level in the loaded modules (``random``'s own, sympy's …)."""
    found: dict[int, random.Random] = {}
    for module in list(sys.modules.values()):
        try:
            values = list(vars(module).values())
        except TypeError:
            continue
        for value in values:
            if isinstance(value, random.Random) and not isinstance(value, random.SystemRandom):
                found[id(value)] = value
    return list(found.values())


def _numpy_state_view() -> memoryview | None:
    """A view on numpy's global ``RandomState`` key, once a write through it is seen to land (else None)."""
    numpy = sys.modules.get("numpy")
    if numpy is None:
        return None
    try:
        state = numpy.random.mtrand._rand
        state.seed()  # also clears the cached Gaussian; the zygote never draws from it
        address = state._bit_generator.ctypes.state_address
        view = memoryview((ctypes.c_char * _MT_STATE_BYTES).from_address(address)).cast("B")
        probe = numpy.arange(1, 625, dtype=numpy.uint32)
        view[:_MT_KEY_BYTES] = probe.tobytes()
        view[_MT_KEY_BYTES:] = _Prepared.pos_end
        _, key, pos, *_ = state.get_state()
        ok = bool((key == probe).all()) and pos == 624
        state.seed()
    except Exception:  # another numpy layout: reseed the documented way
        return None
    return view if ok else None


def _reseed() -> None:
    for generator in _Prepared.generators:
        generator.seed()
    view = _Prepared.numpy_state
    if view is not None:
        view[:_MT_KEY_BYTES] = os.urandom(_MT_KEY_BYTES)
        view[_MT_KEY_BYTES:] = _Prepared.pos_end  # the next draw regenerates the whole state from the new key
    elif "numpy" in sys.modules:
        sys.modules["numpy"].random.seed()


def _stdio() -> tuple[Any, Any, Any]:
    """``sys.stdin``/``stdout``/``stderr`` for fds 0, 1 and 2, built while 1 and 2 are pipes, as in a call."""
    stdin = open(0, closefd=False)  # noqa: SIM115  (fd 0 is /dev/null; lives until the process exits)
    streams = []
    read_end, write_end = os.pipe()
    for fd in (1, 2):
        saved = os.dup(fd)
        try:
            os.dup2(write_end, fd)  # what the wrapper probes now (seekable? position?) is what a call's pipe says
            streams.append(
                open(fd, "w", encoding="utf-8", errors="backslashreplace", buffering=1, closefd=False)  # noqa: SIM115
            )
        finally:
            os.dup2(saved, fd)
            os.close(saved)
    os.close(read_end)
    os.close(write_end)
    return stdin, streams[0], streams[1]


def warm_up() -> None:
    """Run, in the zygote, the first-time work every call would otherwise repeat after its fork, and build what
    every call installs (see ``_Prepared``).

    (``numpy.random.seed()`` alone costs ≈ 2,000 page faults, ≈ 20 ms, the first time it runs in a process.)
    """
    _Prepared.generators = _module_generators()
    _Prepared.numpy_state = _numpy_state_view()
    _reseed()
    try:
        exec(compile("1 / 0", FILENAME, "exec"), {})
    except ZeroDivisionError as exc:
        traceback.format_exception(type(exc), exc, exc.__traceback__)
    _Prepared.stdio = _stdio()
    main = types.ModuleType("__main__")
    main.__dict__["__builtins__"] = builtins
    _Prepared.main = main


def _prepare() -> dict[str, object]:
    """Everything that does not depend on the code, done before the request arrives (off the call's latency).

    Each first write to a page shared with the zygote costs a copy-on-write fault (≈ 3–9 µs here); doing this
    work while the sandbox waits in the pool takes ≈ 1 ms off every call.
    """
    _reseed()
    if _Prepared.stdio is None or _Prepared.main is None:  # not forked from a warmed-up zygote
        warm_up()
    assert _Prepared.stdio is not None
    assert _Prepared.main is not None
    sys.stdin, sys.stdout, sys.stderr = _Prepared.stdio
    for name, stream in zip(("__stdin__", "__stdout__", "__stderr__"), _Prepared.stdio, strict=True):
        setattr(sys, name, stream)  # as in ``python -c``: the originals are the zygote's
    sys.argv = ["-c"]
    sys.dont_write_bytecode = True
    sys.modules["__main__"] = _Prepared.main
    threading = sys.modules.get("threading")
    if threading is not None:  # forked without os.fork's callbacks (zygote.py): this thread's id changed
        with contextlib.suppress(Exception):
            threading.main_thread()._set_native_id()
    exec(compile("_ = [str(i) for i in range(3)]", FILENAME, "exec"), {})  # warm the compiler's pages
    return _Prepared.main.__dict__


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
