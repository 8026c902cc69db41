"""The zygote: the warm parent every call's process is forked from. It does nothing else.

Forked by the relay (``relay.py``) before either imports anything heavy; it preloads the modules (``math,
numpy``), noting which ``os.register_at_fork`` callbacks they add, runs the zygote-wide set-up
(``sandbox.prepare_zygote``: user namespace when not root, base mount namespace with masked paths, PID-namespace
check, one network namespace per slot), creates the slot cgroups, probes the per-call layers in a throw-away
child and answers with a hello (pid, layer report, preload errors). Then it serves three messages from the relay
over a ``SOCK_SEQPACKET`` socket:

* ``F <slot>``: fork a sandbox for that slot (in its own PID namespace when the kernel allows), answered
  ``S <slot> <pid>`` with the sandbox's control socket, stdout and stderr read ends attached (``SCM_RIGHTS``),
  or ``E <slot> <why>``;
* ``K <pid>``: SIGKILL that sandbox (its PID namespace's init, so everything in it) and its process group;
* on SIGCHLD it reaps, checks that the slot's cgroups are empty (sweeps them if not) and reports
  ``R <pid> <exit status> <cpu s> <oom 0|1>``.

Two zygotes (``limits.full_only``, by default sympy): before its hello, this light zygote forks the full one,
which imports the rest of ``preload`` on top and serves the same messages on a socket of its own (passed to the
relay with the hello). A fork and an exit cost in proportion to the memory mapped (≈ 52 MB with sympy, ≈ 15 MB
without): the calls that do not name sympy fork from the light one, ≈ 1.5 ms of CPU less each. The full zygote
shares every layer the light one set up; the relay hands each slot to one of them at a time.

Keeping this loop tiny matters: after each fork every page of the zygote is shared copy-on-write, so whatever
Python work it does per call costs page faults and copies (≈ 3–9 µs each here); the relay, a small separate
process, does the per-call bookkeeping instead, and the files the zygote reads per call (its own size, the
slot's OOM-kill and process counters) stay open and are read with one ``pread`` each. Its environment is
reduced to ``sandbox_environment()`` before the first fork, and the preloaded heap is frozen for the garbage
collector and backed by huge pages where the kernel allows (both make forks cheaper). It exits, killing every
sandbox, when the relay's socket closes.

Sandboxes are forked with ``syscalls.fork_without_python_hooks`` (libc's ``fork`` without ``os.fork``'s
interpreter work, ≈ 200 page faults less per call) when that is sound: the zygote has a single thread and the only
at-fork callbacks registered are ``random``'s (the sandbox reseeds every generator anyway, see ``runner.py``) and
``threading``'s (nothing to do with no other thread; the sandbox refreshes the main thread's native id). Otherwise,
``os.fork``.
"""

from __future__ import annotations

import array
import contextlib
import fcntl
import gc
import importlib
import json
import os
import selectors
import signal
import socket
import sys
from collections.abc import Callable
from typing import Any, NoReturn

from arpo_tools.python_tool import runner, syscalls
from arpo_tools.python_tool.cgroups import CgroupSlot, CgroupTree
from arpo_tools.python_tool.layers import Layer
from arpo_tools.python_tool.limits import SandboxLimits
from arpo_tools.python_tool.sandbox import (
    SETUP_FAILED,
    SandboxPlan,
    enter_sandbox,
    prepare_zygote,
    probe_report,
    sandbox_environment,
)

__all__ = ["Zygote", "run_zygote"]

_MB = 1024 * 1024
_PAGE = os.sysconf("SC_PAGE_SIZE")
_signal: Any = importlib.import_module("_signal")  # the C functions that ``signal.signal`` wraps in enum conversions
_MAX_FD = 1 << 30


def _statm_bytes(fd: int = -1) -> tuple[int, int]:
    """(address-space size, resident size) of this process; ``fd``: ``/proc/self/statm`` kept open."""
    if fd < 0:
        with open("/proc/self/statm", "rb") as statm:
            text = statm.read()
    else:
        text = os.pread(fd, 128, 0)
    size, resident = text.split()[:2]
    return int(size) * _PAGE, int(resident) * _PAGE


def _hooks_known(hooks: list[dict[str, Any]]) -> bool:
    """Whether every at-fork callback the preloaded modules registered is one a sandbox can do without.

    ``random``'s reseeds its generator (``runner`` reseeds every module-level generator), ``threading``'s forgets
    the other threads (there are none). Anything else: ``os.fork`` must run it.
    """
    threading = sys.modules.get("threading")
    for callbacks in hooks:
        for when, callback in callbacks.items():
            if when != "after_in_child":
                return False
            owner = getattr(callback, "__self__", None)
            if threading is not None and callback is getattr(threading, "_after_fork", None):
                continue
            if owner is not None and type(owner).__module__ == "random" and callback.__name__ == "seed":
                continue
            return False
    return True


def _preload(modules: tuple[str, ...]) -> tuple[dict[str, str], list[dict[str, Any]]]:
    """Import ``modules``; returns the errors (a missing module must not stop the tool) and the
    ``os.register_at_fork`` callbacks they registered."""
    errors: dict[str, str] = {}
    hooks: list[dict[str, Any]] = []
    register = os.register_at_fork

    def recording(**callbacks: Any) -> None:
        hooks.append(callbacks)
        register(**callbacks)

    os.register_at_fork = recording
    try:
        for name in modules:
            try:
                importlib.import_module(name)
            except Exception as err:
                errors[name] = f"{type(err).__name__}: {err}"
    finally:
        os.register_at_fork = register
    return errors, hooks


class Zygote:
    """Preloads, sets the zygote-wide layers up, then forks sandboxes on request."""

    def __init__(self, relay: socket.socket, limits: SandboxLimits) -> None:
        self.relay = relay
        self.limits = limits
        self.plan = SandboxPlan(root=os.geteuid() == 0)
        self.cgroups: CgroupTree | None = None
        self.children: dict[int, tuple[int, int]] = {}  # pid → (slot, OOM kills in the slot before the fork)
        self.stopping = False
        self.statm_fd = -1
        self.fork: Callable[[], int] = os.fork
        self.full_pid = 0
        """The full zygote, this (light) zygote's child, where there is one."""
        self.owns_cgroups = True

    # ------------------------------------------------------------------------------------------ start-up

    def prepare(self) -> tuple[dict[str, Any], list[int]]:
        """Everything up to the first fork; returns the hello and the descriptors that go with it (the full
        zygote's socket, where there is one)."""
        preload_errors, hooks = _preload(self.limits.light_modules)
        runner.warm_up()
        os.environ.clear()  # what the calls inherit: set once here, so no call pays for it
        os.environ.update(sandbox_environment())
        _, resident = _statm_bytes()
        memory_bytes = self.limits.memory_mb * _MB + resident + 64 * _MB
        # Before the user namespace (if any): as root, or where a cgroup v2 subtree is delegated to this user.
        self.cgroups, cgroup_layers = CgroupTree.create(
            self.limits.slots, max_processes=self.limits.max_processes, memory_bytes=memory_bytes
        )
        self.plan = prepare_zygote(self.limits)
        results = self._probe()
        for name, error in results.items():
            if error and not error.startswith("ok"):
                self.plan.enabled.discard(name)
        if results.get("cgroup"):
            why = f"joining failed: {results['cgroup']}"
            cgroup_layers = [Layer(layer.name, False, why) for layer in cgroup_layers]
            if self.cgroups is not None:
                self.cgroups.remove()
                self.cgroups = None
        layers = [
            Layer(layer.name, layer.active, self._rlimit_detail())
            if layer.name == "rlimits" and layer.active
            else layer
            for layer in [*probe_report(self.plan, results, self.limits), *cgroup_layers]
        ]
        signal.signal(signal.SIGCHLD, lambda *_: None)
        self.statm_fd = os.open("/proc/self/statm", os.O_RDONLY | os.O_CLOEXEC)
        fds = [self._start_full_zygote(hooks)] if self.limits.full_only else []
        self._settle(hooks)
        hello = {
            "pid": os.getpid(),
            "layers": [layer.to_dict() for layer in layers],
            "preload_errors": preload_errors,
            "python": sys.version.split()[0],
        }
        return hello, fds

    def _settle(self, hooks: list[dict[str, Any]]) -> None:
        """The last step before serving: how to fork, and the heap frozen for the collector and huge pages."""
        if _hooks_known(hooks) and len(os.listdir("/proc/self/task")) == 1:
            self.fork = syscalls.fork_without_python_hooks
        gc.collect()
        gc.freeze()  # the preloaded objects are never scanned again: forks share their pages
        syscalls.collapse_heap_to_huge_pages()

    def _start_full_zygote(self, hooks: list[dict[str, Any]]) -> int:
        """Fork the full zygote (it imports ``limits.full_only`` on top of what this one has, then serves on a
        socket of its own); returns the relay's end of that socket.

        It inherits every layer this zygote set up and probed (namespaces, cgroup slots, the report): the relay
        hands each slot to one zygote at a time. It dies with this zygote (parent-death signal), and this one
        kills it, and waits for it, before removing the slot cgroups.
        """
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        light = os.getpid()
        pid = os.fork()
        if pid == 0:
            status = 0
            try:
                ours.close()
                self.relay.close()
                self.relay = theirs
                self.owns_cgroups = False
                syscalls.set_parent_death_signal(signal.SIGKILL)
                if os.getppid() != light:
                    os._exit(1)
                errors, more = _preload(self.limits.full_only)
                runner.warm_up()  # again: sympy's generators too
                os.close(self.statm_fd)
                self.statm_fd = os.open("/proc/self/statm", os.O_RDONLY | os.O_CLOEXEC)
                self._settle(hooks + more)
                self.relay.send(json.dumps({"pid": os.getpid(), "preload_errors": errors}).encode())
                self.serve()
            except BaseException as err:
                with contextlib.suppress(OSError):
                    os.write(2, f"arpo python full zygote failed: {type(err).__name__}: {err}\n".encode())
                status = 1
            os._exit(status)
        theirs.close()
        self.full_pid = pid
        return ours.detach()

    def _rlimit_detail(self) -> str:
        nproc = "per uid" if self.plan.root else "shared by all calls (one uid)"
        return (
            f"AS = interpreter + {self.limits.memory_mb} MB, CPU {self.limits.cpu_seconds} s, "
            f"FSIZE {self.limits.scratch_mb} MB, NPROC {self.limits.max_processes} {nproc}, NOFILE 256, CORE 0"
        )

    def _probe(self) -> dict[str, str]:
        read_end, write_end = os.pipe()
        cgroup = self.cgroups.slots[0] if self.cgroups else None
        size, _ = _statm_bytes()
        netns = self.plan.netns_fds[0] if self.plan.netns_fds else -1
        pid = self._fork()
        if pid == 0:
            results: dict[str, str] = {}
            try:
                enter_sandbox(
                    self.plan,
                    self.limits,
                    slot=0,
                    cgroup=cgroup,
                    base_address_space=size,
                    netns_fd=netns,
                    probe=results,
                )
                os.write(write_end, json.dumps(results).encode())
            finally:
                os._exit(0)
        os.close(write_end)
        data = bytearray()
        while chunk := os.read(read_end, 65536):
            data += chunk
        os.close(read_end)
        os.waitpid(pid, 0)
        if cgroup is not None:
            cgroup.sweep()
        if not data:
            return {"process-group-kill": "the probe process died"}
        parsed: dict[str, str] = json.loads(data)
        return parsed

    def _fork(self) -> int:
        """fork(), inside a fresh PID namespace when the plan has them."""
        pidns = self.plan.pid_namespace
        if pidns:
            syscalls.unshare(syscalls.CLONE_NEWPID)
        try:
            pid = self.fork()
        except BaseException:
            if pidns:
                syscalls.setns(self.plan.pidns_fd, syscalls.CLONE_NEWPID)
            raise
        if pid and pidns:  # back to our own namespace for the next fork (the child stays in the new one)
            syscalls.setns(self.plan.pidns_fd, syscalls.CLONE_NEWPID)
        return pid

    # ------------------------------------------------------------------------------------------ per call

    def _spawn(self, slot: int) -> None:
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        cgroup = self.cgroups.slots[slot] if self.cgroups else None
        oom_before = cgroup.oom_kills() if cgroup else 0
        size, _ = _statm_bytes(self.statm_fd)
        try:
            pid = self._fork()
        except OSError as err:
            for fd in (out_r, out_w, err_r, err_w):
                os.close(fd)
            ours.close()
            theirs.close()
            self._tell(f"E {slot} fork failed: {err}")
            return
        if pid == 0:
            self._child(out_w, err_w, theirs.fileno(), slot, size)
        self.children[pid] = (slot, oom_before)
        fds = array.array("i", [ours.fileno(), out_r, err_r])
        self._tell(f"S {slot} {pid}", fds)
        for fd in (out_r, out_w, err_r, err_w):
            os.close(fd)
        ours.close()
        theirs.close()

    def _child(self, out_w: int, err_w: int, ctl: int, slot: int, size: int) -> NoReturn:
        try:
            # First of all keep only our own descriptors: a copy of another call's held here would delay that
            # call's end of file, and nothing of the zygote's may reach the code.
            cgroup = self.cgroups.slots[slot] if self.cgroups else None
            procs = cgroup.procs_fds if cgroup else []
            netns = self.plan.netns_fds[slot] if self.plan.netns_fds else -1
            keep = [out_w, err_w, ctl, *procs, *([netns] if netns >= 0 else [])]
            # Each kept descriptor goes to 1, 2, 3 …; copies above that first, so none overwrites another.
            moved = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, len(keep) + 1) for fd in keep]
            for target, fd in enumerate(moved, start=1):
                os.dup2(fd, target, inheritable=target < runner.CONTROL_FD)
            os.closerange(len(keep) + 1, _MAX_FD)  # close_range(2): every other descriptor of the zygote
            devnull = os.open(os.devnull, os.O_RDONLY)
            os.dup2(devnull, 0)
            os.close(devnull)
            first = runner.CONTROL_FD + 1
            if cgroup is not None:
                cgroup = CgroupSlot(cgroup.dirs, list(range(first, first + len(procs))), cgroup.memory_dir)
            netns = first + len(procs) if netns >= 0 else -1
            # _signal: the C functions that signal.signal wraps in enum conversions (≈ 50 page copies here).
            _signal.set_wakeup_fd(-1)
            _signal.signal(_signal.SIGCHLD, _signal.SIG_DFL)
            _signal.signal(_signal.SIGTERM, _signal.SIG_DFL)
            _signal.signal(_signal.SIGINT, _signal.default_int_handler)
            enter_sandbox(self.plan, self.limits, slot=slot, cgroup=cgroup, base_address_space=size, netns_fd=netns)
        except BaseException as err:
            with contextlib.suppress(OSError):
                os.write(2, f"sandbox setup failed: {err}\n".encode())
            os._exit(SETUP_FAILED)
        runner.run_call()

    def _tell(self, message: str, fds: array.array[int] | None = None) -> None:
        """A message to the relay; if it is gone, so is our reason to live."""
        try:
            if fds is None:
                self.relay.send(message.encode())
            else:
                self.relay.sendmsg([message.encode()], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)])
        except OSError:
            self.stopping = True

    def _kill(self, pid: int) -> None:
        if pid in self.children:  # never a pid we have already reaped: it may belong to someone else by now
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)  # the PID namespace's init: the kernel kills the rest
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)

    def _reap(self) -> None:
        while True:
            try:
                pid, status, usage = os.wait4(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid == self.full_pid:  # the full zygote died: the relay sees its socket close and stops
                self.full_pid = 0
            if pid not in self.children:
                continue
            slot, oom_before = self.children.pop(pid)
            oom = 0
            if self.cgroups is not None:
                cgroup = self.cgroups.slots[slot]
                oom = int(cgroup.oom_kills() > oom_before)
                # Empty already when the call had its own PID namespace (its processes died with it); otherwise
                # whatever escaped the process group dies now.
                cgroup.sweep()
            cpu = usage.ru_utime + usage.ru_stime
            self._tell(f"R {pid} {os.waitstatus_to_exitcode(status)} {cpu:.3f} {oom}")

    def serve(self) -> None:
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_r, False)
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
        selector = selectors.DefaultSelector()
        selector.register(self.relay, selectors.EVENT_READ, "relay")
        selector.register(wake_r, selectors.EVENT_READ, "wake")
        while not self.stopping:
            for key, _ in selector.select():
                if key.data == "wake":
                    with contextlib.suppress(BlockingIOError):
                        os.read(wake_r, 4096)  # a few bytes; if more are left, select says so again
                    continue
                try:
                    message = self.relay.recv(256)
                except OSError:
                    message = b""
                if not message:
                    self.stopping = True
                    break
                kind, _, argument = message.decode().partition(" ")
                if kind == "F":
                    self._spawn(int(argument))
                elif kind == "K":
                    self._kill(int(argument))
            self._reap()
        self.shutdown()

    def shutdown(self) -> None:
        for pid in list(self.children):
            self._kill(pid)
        if self.full_pid:  # its sandboxes die with it (parent-death signal)
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.full_pid, signal.SIGKILL)
        for pid in [*self.children, *([self.full_pid] if self.full_pid else [])]:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
        if self.cgroups is not None and self.owns_cgroups:
            self.cgroups.remove()  # sweeps each slot first: what is left of the full zygote's sandboxes too


def run_zygote(relay: socket.socket, limits: SandboxLimits) -> NoReturn:
    """The zygote process's whole life (it was just forked by the relay): never returns."""
    status = 0
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        zygote = Zygote(relay, limits)
        signal.signal(signal.SIGTERM, lambda *_: setattr(zygote, "stopping", True))
        hello, fds = zygote.prepare()
        ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))] if fds else []
        relay.sendmsg([json.dumps(hello).encode()], ancillary)
        for fd in fds:
            os.close(fd)
        zygote.serve()
    except BaseException as err:
        with contextlib.suppress(OSError):
            os.write(2, f"arpo python zygote failed: {type(err).__name__}: {err}\n".encode())
        status = 1
    os._exit(status)
