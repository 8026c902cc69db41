"""The server's side of the sandbox: start the relay and zygote, hand them calls, restart them when they die.

Processes: this async server → the relay (``python -m arpo_tools.python_tool.relay``: per-call bookkeeping) → the
zygote (forked by the relay; preloaded; forks one sandbox per call). Neither is a fork of this server. They get a
minimal environment (none of the server's variables, so no secret can reach a call even through them), ``cwd=/``,
their own session, and stdout on /dev/null (under stdio, stdout is the MCP channel).

Per call: a fresh socket pair; the request is written into it first (it waits in the socket's buffer, so the
relay finds it as soon as it gets the socket), then one end goes to the relay over the control socket
(``SCM_RIGHTS``); the reply comes back on the other, read with a size cap, straight from the non-blocking socket
(no stream object per call: it is on every call's path). Closing it (a cancelled tool call) kills the sandbox.
Calls at once are bounded by ``max_concurrent`` (a ``CapacityLimiter``); a server-side deadline (the call's
timeout + a grace period) guards against a relay that stops answering.

If the relay or the zygote dies, the calls in flight get an error saying so, and the next call starts both anew
and says so in its result ("[note: the sandbox was restarted …]"); a start that fails is retried at most once
every ``RESTART_BACKOFF_S`` seconds, each refused call saying why.
"""

from __future__ import annotations

import array
import contextlib
import json
import logging
import socket
import struct
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio

from arpo_tools.python_tool.layers import Layer, format_layers
from arpo_tools.python_tool.limits import SandboxLimits
from arpo_tools.python_tool.result import RunOutcome

__all__ = ["RESTART_BACKOFF_S", "PythonSandbox", "SandboxUnavailable"]

logger = logging.getLogger("arpo_tools.python_tool")

RESTART_BACKOFF_S = 1.0
_STARTUP_TIMEOUT_S = 180.0
_GRACE_S = 15.0
_SRC = str(Path(__file__).resolve().parents[2])


class SandboxUnavailable(RuntimeError):
    """The relay and zygote could not be started; ``str()`` says why."""


@dataclass(slots=True)
class _Zygote:
    """One running relay (``process``) and its zygote."""

    process: subprocess.Popen[bytes]
    control: socket.socket
    pid: int
    layers: list[Layer]
    preload_errors: dict[str, str]
    zygote_pid: int = 0

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        """Close the control socket (the relay exits, the zygote kills its sandboxes and exits); SIGKILL if the
        relay lingers."""
        with contextlib.suppress(OSError):
            self.control.close()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _zygote_environment() -> dict[str, str]:
    """Nothing of the server's: only what the interpreter needs to start and find this package."""
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "PYTHONPATH": _SRC,
        "PYTHONDONTWRITEBYTECODE": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }


class PythonSandbox:
    """Sandboxed Python runs behind one relay and zygote. Use as ``async with`` (reference-counted), or call
    ``run`` directly (they start on first use and exit with this process)."""

    def __init__(self, limits: SandboxLimits, *, required_layers: tuple[str, ...] = ()) -> None:
        self.limits = limits
        self.required_layers = required_layers
        self._zygote: _Zygote | None = None
        self._lock = anyio.Lock()
        self._limiter = anyio.CapacityLimiter(limits.max_concurrent)
        self._users = 0
        self._last_failure = 0.0
        self._failure = ""
        self._pending_notes: list[str] = []
        self.starts = 0
        """How many relay + zygote pairs were started (more than one: one died and was replaced)."""

    async def __aenter__(self) -> PythonSandbox:
        self._users += 1
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._users -= 1
        if self._users == 0:
            with anyio.CancelScope(shield=True):
                await self.aclose()

    async def aclose(self) -> None:
        async with self._lock:
            zygote, self._zygote = self._zygote, None
        if zygote is not None:
            await anyio.to_thread.run_sync(zygote.stop)

    @property
    def preload_errors(self) -> dict[str, str]:
        """Modules of ``preload`` that failed to import (name → error), while a zygote runs."""
        return dict(self._zygote.preload_errors) if self._zygote is not None else {}

    @property
    def relay_pid(self) -> int | None:
        """The relay's pid (the process this server started), while one runs."""
        return self._zygote.pid if self._zygote is not None else None

    @property
    def zygote_pid(self) -> int | None:
        """The zygote's pid (the relay's child), while one runs."""
        return self._zygote.zygote_pid if self._zygote is not None else None

    # ------------------------------------------------------------------------------------------ start-up

    def _spawn(self) -> _Zygote:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            process = subprocess.Popen(
                [sys.executable, "-s", "-m", "arpo_tools.python_tool.relay", "--control-fd", str(theirs.fileno())],
                pass_fds=[theirs.fileno()],
                env=_zygote_environment(),
                cwd="/",
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                start_new_session=True,
            )
        finally:
            theirs.close()
        ours.send(self.limits.to_json().encode())
        ours.setblocking(False)
        return _Zygote(process, ours, process.pid, [], {})

    async def _start(self) -> _Zygote:
        if not sys.platform.startswith("linux"):
            raise SandboxUnavailable(f"the sandbox needs Linux (namespaces, cgroups, prctl); this is {sys.platform}")
        zygote = self._spawn()
        try:
            with anyio.fail_after(_STARTUP_TIMEOUT_S):
                await anyio.wait_readable(zygote.control)
            raw = zygote.control.recv(1 << 20)
            if not raw:
                raise SandboxUnavailable(f"the zygote exited at start (status {zygote.process.wait()})")
            hello: dict[str, Any] = json.loads(raw)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(zygote.stop)
            raise
        zygote.layers = [Layer.from_dict(layer) for layer in hello["layers"]]
        zygote.preload_errors = dict(hello.get("preload_errors") or {})
        zygote.zygote_pid = int(hello.get("zygote_pid") or 0)
        off = [layer.name for layer in zygote.layers if not layer.active]
        logger.info(
            "python sandbox ready (relay pid %d, zygote pid %d); layers off: %s",
            zygote.pid,
            zygote.zygote_pid,
            ", ".join(off) or "none",
        )
        logger.debug("python sandbox layers:\n%s", format_layers(zygote.layers))
        for name, error in zygote.preload_errors.items():
            logger.warning("python sandbox: preloading %s failed (%s)", name, error)
        return zygote

    async def _ensure(self) -> _Zygote:
        zygote = self._zygote
        if zygote is not None and zygote.alive():  # the usual case, on every call: no lock to take
            return zygote
        async with self._lock:
            zygote = self._zygote
            if zygote is not None and zygote.alive():
                return zygote
            if zygote is not None:
                status = zygote.process.poll()
                self._zygote = None
                await anyio.to_thread.run_sync(zygote.stop)
                self._pending_notes.append(
                    f"the sandbox was restarted (its parent process had exited with status {status})"
                )
            wait = self._last_failure + RESTART_BACKOFF_S - time.monotonic()
            if self._failure and wait > 0:
                raise SandboxUnavailable(self._failure)
            try:
                self._zygote = await self._start()
            except (OSError, SandboxUnavailable, TimeoutError, ValueError) as err:
                self._last_failure = time.monotonic()
                self._failure = f"the sandbox could not start: {err}"
                raise SandboxUnavailable(self._failure) from err
            self._failure = ""
            self.starts += 1
            return self._zygote

    async def layers(self) -> list[Layer]:
        """The isolation layers every call gets (starts the zygote if it is not running)."""
        return list((await self._ensure()).layers)

    # ------------------------------------------------------------------------------------------ calls

    async def _send_fd(self, zygote: _Zygote, sock: socket.socket) -> None:
        fds = array.array("i", [sock.fileno()])
        while True:
            try:
                zygote.control.sendmsg([b"c"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)])
                return
            except BlockingIOError:
                await anyio.wait_writable(zygote.control)

    async def run(self, code: str, timeout_s: float | None = None) -> RunOutcome:
        """Run ``code`` in a fresh sandbox; never raises for the code's or the sandbox's failures."""
        timeout = min(timeout_s or self.limits.timeout_s, self.limits.timeout_s)
        async with self._limiter:
            try:
                zygote = await self._ensure()
            except SandboxUnavailable as err:
                return RunOutcome.error(str(err))
            notes, self._pending_notes = tuple(self._pending_notes), []
            active = {layer.name for layer in zygote.layers if layer.active}
            missing = [name for name in self.required_layers if name not in active]
            if missing:
                return RunOutcome.error(f"required isolation layers are off here: {', '.join(missing)}", notes)
            return await self._call(zygote, code, timeout, notes)

    async def _call(self, zygote: _Zygote, code: str, timeout: float, notes: tuple[str, ...]) -> RunOutcome:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            return await self._exchange(zygote, ours, theirs, code, timeout, notes)
        finally:
            ours.close()  # also what cancels the call (the relay sees the end of file)
            theirs.close()

    async def _exchange(
        self,
        zygote: _Zygote,
        ours: socket.socket,
        theirs: socket.socket,
        code: str,
        timeout: float,
        notes: tuple[str, ...],
    ) -> RunOutcome:
        request = json.dumps({"code": code, "timeout_s": timeout}).encode()
        pending = memoryview(struct.pack(">I", len(request)) + request)
        ours.setblocking(False)
        with contextlib.suppress(BlockingIOError):  # usually all of it: the relay then reads it at once
            pending = pending[ours.send(pending) :]
        try:
            await self._send_fd(zygote, theirs)
        except OSError as err:
            return self._died(zygote, f"the sandbox's parent process is gone ({err})", notes)
        theirs.close()
        limit = 6 * (2 * self.limits.max_output_bytes) + 65536  # JSON escapes at most 6 bytes per byte
        data = bytearray()
        with anyio.move_on_after(timeout + _GRACE_S) as scope:
            try:
                while pending:
                    await anyio.wait_writable(ours)
                    with contextlib.suppress(BlockingIOError):
                        pending = pending[ours.send(pending) :]
                while len(data) < 4 or len(data) < 4 + struct.unpack(">I", data[:4])[0] <= limit:
                    await anyio.wait_readable(ours)
                    try:
                        chunk = ours.recv(1 << 16)
                    except BlockingIOError:
                        continue
                    if not chunk:
                        break
                    data += chunk
            except OSError:
                pass
        if scope.cancelled_caught:
            zygote.process.kill()  # it stopped answering: the next call starts a new one
            return RunOutcome.error(f"the sandbox did not answer within {timeout + _GRACE_S:g} s", notes)
        size = struct.unpack(">I", data[:4])[0] if len(data) >= 4 else -1
        if size < 0 or len(data) < 4 + size:
            return self._died(zygote, "the sandbox's parent process exited during the call", notes)
        return RunOutcome.from_json(json.loads(data[4 : 4 + size]), notes)

    def _died(self, zygote: _Zygote, message: str, notes: tuple[str, ...]) -> RunOutcome:
        if zygote.alive():  # it answered nothing yet lives: a broken zygote is replaced, never reused
            zygote.process.kill()
        return RunOutcome.error(f"{message}; it will be restarted: run the code again", notes)
