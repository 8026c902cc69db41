"""The relay: a small process between the server and the zygote that runs every call's bookkeeping.

Started by the server (``python -m arpo_tools.python_tool.relay --control-fd N``, minimal environment, own session,
stdout not inherited). It receives the limits, forks the zygote before importing anything heavy (``zygote.py``),
forwards the zygote's hello, then serves calls: per call the server writes a length-prefixed JSON request into a
fresh socket pair and passes one end of it over the control socket (``SCM_RIGHTS``); the relay reads the request
as soon as it gets the socket and writes one length-prefixed JSON outcome back; closing it early cancels the
call. Once the outcome is sent, the zygote is told to kill what is left of the sandbox.

Why a separate process: after each fork every page of the zygote is shared copy-on-write, so per-call Python
work done there costs page copies, and a fork blocks its caller for milliseconds. Here the relay never forks;
it asks the zygote for sandboxes (``F``), gets them back as file descriptors (``S``), and learns of their end
(``R``), so a result is never held up by the fork of the next sandbox.

With two zygotes (``limits.full_only``, see ``zygote.py``) the relay gets the full one's socket with the light
one's hello, waits for it to be ready too, and sends each call to the full zygote when its code names one of those
modules (as a word: ``sympy``), to the light one otherwise; each keeps its own sandboxes ready.

Protections applied here: ``prefork`` sandboxes are kept ready (each runs exactly one call); the wall-clock
deadline has the zygote SIGKILL the sandbox's PID namespace (or process group); stdout is kept up to
``max_output_bytes`` and the rest counted and dropped, stderr keeps its tail; a slot (uid, cgroups, network
namespace) goes to one sandbox at a time, and is reused only after its process is reaped and its cgroups are
empty. When the server closes the control socket the relay exits, and the zygotes, seeing their sockets close,
kill every sandbox and exit too.
"""

from __future__ import annotations

import argparse
import array
import collections
import contextlib
import heapq
import json
import os
import re
import selectors
import signal
import socket
import struct
import time
from dataclasses import dataclass, field
from typing import Any

from arpo_tools.python_tool.capture import Sandbox
from arpo_tools.python_tool.limits import SandboxLimits

__all__ = ["Relay", "main"]

_MAX_REQUEST = 16 * 1024 * 1024
_FAILURES_BEFORE_PAUSE = 3


@dataclass(eq=False, slots=True)
class _Link:
    """One zygote as the relay sees it: its socket, its sandboxes, the calls waiting for one of them."""

    sock: socket.socket
    prefork: int
    ready: collections.deque[Sandbox] = field(default_factory=collections.deque)
    pending: collections.deque[_Call] = field(default_factory=collections.deque)
    children: dict[int, Sandbox] = field(default_factory=dict)  # its pids (each zygote may have its own PID space)
    forking: int = 0


@dataclass(eq=False, slots=True)
class _Call:
    sock: socket.socket
    inbox: bytearray = field(default_factory=bytearray)
    request: dict[str, Any] | None = None
    outbox: bytes = b""
    child: Sandbox | None = None
    link: _Link | None = None


class Relay:
    """The per-call event loop (single-threaded, ``selectors``).

    ``zygotes``: the light zygote, then (where ``limits.full_only`` names modules) the full one; a call whose code
    names one of those modules (as a word) goes to the full zygote, every other to the light one. The slots are
    shared: a slot is handed to one zygote at a time.
    """

    def __init__(self, control: socket.socket, zygotes: list[socket.socket], limits: SandboxLimits) -> None:
        self.control = control
        self.limits = limits
        self.links = [_Link(sock, limits.prefork if i == 0 else limits.full_prefork) for i, sock in enumerate(zygotes)]
        names = "|".join(re.escape(name) for name in limits.full_only)
        self.full_pattern = re.compile(rf"\b(?:{names})\b") if names and len(self.links) > 1 else None
        self.sel = selectors.DefaultSelector()
        self.free_slots: collections.deque[int] = collections.deque(range(limits.slots))
        self.deadlines: list[tuple[float, int, Sandbox]] = []
        self.sequence = 0
        self.setup_failures = 0
        self.last_setup_error = ""
        self.stopping = False

    # ------------------------------------------------------------------------------------------ sandboxes

    def _route(self, code: str) -> _Link:
        if self.full_pattern is not None and self.full_pattern.search(code):
            return self.links[1]
        return self.links[0]

    def _fork(self, link: _Link) -> bool:
        """Ask the zygote for one more sandbox; False when no slot is free."""
        if not self.free_slots:
            return False
        slot = self.free_slots.popleft()
        self._tell_zygote(link, f"F {slot}")
        link.forking += 1
        return True

    def _tell_zygote(self, link: _Link, message: str) -> None:
        try:
            link.sock.send(message.encode())
        except OSError:
            self.stopping = True  # the zygote is gone: so are its sandboxes; the server starts afresh

    def _refill(self) -> None:
        """Keep each zygote's ``prefork`` sandboxes ready or on their way, plus one for each call waiting for one."""
        for link in self.links:
            while not self.stopping and len(link.ready) + link.forking < link.prefork + len(link.pending):
                failing = self.setup_failures >= _FAILURES_BEFORE_PAUSE
                if failing and (link.ready or link.forking or not link.pending):
                    break  # set-up keeps failing: try again only for a waiting call, one at a time
                if not self._fork(link):
                    return  # every slot busy: the next reap frees one

    def _on_sandbox(self, link: _Link, message: str, fds: list[int]) -> None:
        _, slot, pid = message.split()
        link.forking -= 1
        ctl, out, err = fds
        os.set_blocking(out, False)
        os.set_blocking(err, False)
        sock = socket.socket(fileno=ctl)
        sock.setblocking(False)
        child = Sandbox(int(pid), int(slot), sock, out, err, cap=self.limits.max_output_bytes, zygote=link)
        link.children[child.pid] = child
        self.sel.register(out, selectors.EVENT_READ, ("out", child))
        self.sel.register(err, selectors.EVENT_READ, ("err", child))
        link.ready.append(child)
        self._dispatch()

    def _on_fork_error(self, link: _Link, message: str) -> None:
        _, slot, why = message.split(" ", 2)
        link.forking -= 1
        self.free_slots.append(int(slot))
        self.last_setup_error = why
        self.setup_failures += 1
        while link.pending and not link.ready and not link.forking:
            self._reply(link.pending.popleft(), {"setup_error": why})

    def _on_reaped(self, link: _Link, message: str) -> None:
        _, pid, code, cpu, oom = message.split()
        child = link.children.pop(int(pid), None)
        if child is None:
            return
        child.exit_code, child.cpu_s, child.oom_killed = int(code), float(cpu), oom == "1"
        if child in link.ready:  # died before it was given a call: its set-up failed
            link.ready.remove(child)
            child.drain()
            child.finished = True
            self.last_setup_error = child.setup_error()
            self.setup_failures += 1
            self._close_child_io(child)
            if link.pending and not link.ready and self.setup_failures >= _FAILURES_BEFORE_PAUSE:
                for call in list(link.pending):
                    self._reply(call, {"setup_error": self.last_setup_error})
                link.pending.clear()
        elif child.call is not None:
            self._finish(child)
        self.free_slots.append(child.slot)
        self._dispatch()

    def _dispatch(self) -> None:
        for link in self.links:
            while link.pending and link.ready and not self.stopping:
                self._start(link.pending.popleft(), link.ready.popleft())
        self._refill()

    def _start(self, call: _Call, child: Sandbox) -> None:
        assert call.request is not None
        timeout = min(float(call.request.get("timeout_s") or self.limits.timeout_s), self.limits.timeout_s)
        request = {"code": call.request["code"], "cpu_s": min(timeout + 1.0, self.limits.cpu_seconds)}
        payload = json.dumps(request).encode()
        child.outbox = struct.pack(">I", len(payload)) + payload
        child.call = call
        call.child = child
        child.started = time.monotonic()
        child.timeout_s = timeout
        self.sequence += 1
        heapq.heappush(self.deadlines, (child.started + timeout, self.sequence, child))
        self._flush_child(child)

    def _flush_child(self, child: Sandbox) -> None:
        try:
            sent = child.ctl.send(child.outbox) if child.outbox else 0
            child.outbox = child.outbox[sent:]
        except BlockingIOError:
            pass
        except OSError:
            child.outbox = b""  # it died: its reap reports it
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if child.outbox else 0)
        self._watch(child.ctl, events, ("ctl", child))

    def _watch(self, fileobj: Any, events: int, data: Any) -> None:
        try:
            self.sel.modify(fileobj, events, data)
        except KeyError:
            self.sel.register(fileobj, events, data)

    def _unwatch(self, fileobj: Any) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self.sel.unregister(fileobj)

    def _kill(self, child: Sandbox) -> None:
        if child.exit_code is None:
            self._tell_zygote(child.zygote, f"K {child.pid}")

    def _close_child_io(self, child: Sandbox) -> None:
        for fd in (child.out, child.err):
            if fd >= 0:
                self._unwatch(fd)
                with contextlib.suppress(OSError):
                    os.close(fd)
        child.out = child.err = -1
        self._unwatch(child.ctl)
        child.ctl.close()

    def _finish(self, child: Sandbox) -> None:
        """Send the call's outcome (once) and make sure nothing of the sandbox runs on."""
        if child.finished:
            return
        child.finished = True
        child.drain()
        call, child.call = child.call, None
        self._close_child_io(child)
        if call is not None:
            self._reply(call, child.outcome())
        self._kill(child)  # after the reply, which is then on its way while the zygote does this

    def _reply(self, call: _Call, outcome: dict[str, Any]) -> None:
        payload = json.dumps(outcome).encode()
        call.outbox = struct.pack(">I", len(payload)) + payload
        self._flush_call(call)

    def _flush_call(self, call: _Call) -> None:
        try:
            sent = call.sock.send(call.outbox)
            call.outbox = call.outbox[sent:]
        except BlockingIOError:
            pass
        except OSError:
            call.outbox = b""
        if call.outbox:
            self._watch(call.sock, selectors.EVENT_WRITE, ("call", call))
        else:
            self._unwatch(call.sock)
            call.sock.close()

    # ------------------------------------------------------------------------------------------ events

    def _on_control(self) -> None:
        try:
            message, ancillary, _, _ = self.control.recvmsg(64, socket.CMSG_SPACE(16 * 4))
        except BlockingIOError:
            return
        except OSError:
            message, ancillary = b"", []
        if not message and not ancillary:
            self.stopping = True
            return
        for fd in _fds(ancillary):
            sock = socket.socket(fileno=fd)
            sock.setblocking(False)
            call = _Call(sock)
            self._watch(sock, selectors.EVENT_READ, ("call", call))
            self._on_call(call, selectors.EVENT_READ)  # the server writes the request first: it is usually there

    def _on_zygote(self, link: _Link) -> None:
        try:
            message, ancillary, _, _ = link.sock.recvmsg(4096, socket.CMSG_SPACE(4 * 4))
        except BlockingIOError:
            return
        except OSError:
            message, ancillary = b"", []
        if not message:
            self.stopping = True  # the zygote is gone: so are its sandboxes; the server starts afresh
            return
        text = message.decode("utf-8", "replace")
        if text.startswith("S "):
            self._on_sandbox(link, text, _fds(ancillary))
        elif text.startswith("R "):
            self._on_reaped(link, text)
        elif text.startswith("E "):
            self._on_fork_error(link, text)

    def _on_call(self, call: _Call, events: int) -> None:
        if events & selectors.EVENT_WRITE:
            self._flush_call(call)
            return
        try:
            data = call.sock.recv(1 << 16)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:  # the server hung up: cancel
            self._unwatch(call.sock)
            call.sock.close()
            if call.link is not None and call in call.link.pending:
                call.link.pending.remove(call)
            child = call.child
            if child is not None and not child.finished:
                child.call = None
                self._finish(child)
            return
        if call.request is not None:
            return
        call.inbox += data
        if len(call.inbox) >= 4:
            (size,) = struct.unpack(">I", call.inbox[:4])
            if size > _MAX_REQUEST:
                self._reply(call, {"setup_error": f"request of {size} bytes is too large"})
                return
            if len(call.inbox) >= 4 + size:
                call.request = json.loads(call.inbox[4 : 4 + size])
                call.inbox.clear()
                call.link = self._route(str(call.request.get("code", "")))
                call.link.pending.append(call)
                self._dispatch()

    def _on_ctl(self, child: Sandbox, events: int) -> None:
        if events & selectors.EVENT_WRITE:
            self._flush_child(child)
        if not events & selectors.EVENT_READ:
            return
        try:
            data = child.ctl.recv(64)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._unwatch(child.ctl)
            return
        text = data.decode("ascii", "replace")
        if text.startswith("exit "):
            with contextlib.suppress(ValueError):
                child.reported_exit = int(text.split()[1])
                self.setup_failures = 0
            self._finish(child)

    def _expire(self) -> None:
        now = time.monotonic()
        while self.deadlines and self.deadlines[0][0] <= now:
            _, _, child = heapq.heappop(self.deadlines)
            if not child.finished and child.call is not None:
                child.timed_out = True
                self._finish(child)

    def _on_output(self, kind: str, child: Sandbox) -> None:
        fd = child.out if kind == "out" else child.err
        if child.finished or fd < 0 or child.read(fd):
            return
        self._unwatch(fd)
        os.close(fd)
        if kind == "out":
            child.out = -1
        else:
            child.err = -1

    def serve(self) -> None:
        self.control.setblocking(False)
        self.sel.register(self.control, selectors.EVENT_READ, ("control", None))
        for link in self.links:
            link.sock.setblocking(False)
            self.sel.register(link.sock, selectors.EVENT_READ, ("zygote", link))
        self._refill()
        while not self.stopping:
            timeout = max(0.0, self.deadlines[0][0] - time.monotonic()) if self.deadlines else None
            for key, events in self.sel.select(timeout):
                kind, obj = key.data
                if kind == "control":
                    self._on_control()
                elif kind == "zygote":
                    self._on_zygote(obj)
                elif kind == "call":
                    self._on_call(obj, events)
                elif kind == "ctl":
                    self._on_ctl(obj, events)
                else:
                    self._on_output(kind, obj)
            self._expire()


def _fds(ancillary: list[tuple[int, int, bytes]]) -> list[int]:
    fds = array.array("i")
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[: len(data) - len(data) % fds.itemsize])
    return list(fds)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="arpo python-tool relay (started by the MCP server)")
    parser.add_argument("--control-fd", type=int, required=True)
    args = parser.parse_args(argv)
    control = socket.socket(fileno=args.control_fd)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the server; we exit when it closes the socket
    config = control.recv(1 << 20)
    if not config:
        return
    limits = SandboxLimits.from_json(config.decode())
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    pid = os.fork()
    if pid == 0:  # the zygote: imports the heavy modules only now, in its own process
        control.close()
        ours.close()
        from arpo_tools.python_tool.zygote import run_zygote

        run_zygote(theirs, limits)
    theirs.close()
    message, ancillary, _, _ = ours.recvmsg(1 << 20, socket.CMSG_SPACE(4))
    if not message:
        _, status = os.waitpid(pid, 0)
        raise SystemExit(f"the zygote exited at start (status {os.waitstatus_to_exitcode(status)})")
    hello = json.loads(message)
    zygotes = [ours]
    for fd in _fds(ancillary):  # the full zygote's socket (see zygote.py): wait for it to be ready too
        full = socket.socket(fileno=fd)
        zygotes.append(full)
        ready = full.recv(1 << 20)
        if not ready:
            raise SystemExit("the full zygote exited at start")
        for name, error in json.loads(ready).get("preload_errors", {}).items():
            hello["preload_errors"][name] = error
    control.send(json.dumps({**hello, "zygote_pid": pid}).encode())
    relay = Relay(control, zygotes, limits)
    signal.signal(signal.SIGTERM, lambda *_: setattr(relay, "stopping", True))
    relay.serve()
    for sock in zygotes:
        sock.close()  # each zygote kills its sandboxes and exits
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


if __name__ == "__main__":
    main()
