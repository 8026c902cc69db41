"""The isolation layers: set up once in the zygote (``prepare_zygote``), entered by every call (``enter_sandbox``).

Zygote, once, at start:

* not root: a user namespace of its own (the outer uid mapped to 0 inside), so the namespace layers still work
  in an unprivileged container or for a normal user;
* a base mount namespace: propagation private; ``masked_paths`` (``/run``, ``/home``, ``/root`` …) hidden behind
  empty tmpfs; Python's own directories (``sys.path``, prefixes) bound back in, also where an ancestor directory
  is not searchable by the sandbox uid (here the interpreter lives under ``/root``, mode 0700);
* whether a PID namespace per call works (``unshare(CLONE_NEWPID)`` before each fork, ``setns`` back after);
* one empty network namespace per slot (``slot_network_namespaces``), held open by the zygote: creating and
  destroying a network namespace costs ≈ 0.8 ms of CPU per call (sysctl tables, loopback device, an RCU grace
  period in a kernel worker), entering an existing one almost nothing. A slot runs one call at a time and is
  reused only once every process of the previous call is gone (its PID namespace died with it), and no call can
  change the namespace (no ``CAP_NET_ADMIN``: the loopback stays down, nothing is configured), so what a call
  sees of the network is the same as with a new namespace: nothing. Concurrent calls are in different slots, so
  they cannot reach each other either (not even through abstract Unix sockets, which are per network namespace).

Each call, in the freshly forked child, as root, in this order (``enter_sandbox``): own session (``setsid``, so
the timeout kills the whole group); join the slot's cgroups; enter the slot's network namespace (or a new one
where the zygote could not create them); new IPC/UTS and mount namespaces; the whole
tree read-only (``mount_setattr`` ``AT_RECURSIVE``, or a remount per mount on older kernels); a size-capped tmpfs
on ``/tmp`` and ``/dev/shm``; a fresh ``/proc`` for its PID namespace; rlimits; drop to the slot's unprivileged
uid (or drop every capability inside the user namespace); ``PR_SET_NO_NEW_PRIVS``; parent-death signal; a
minimal environment; ``cwd=/tmp``.

Every layer is probed once at start in a throw-away child (``probe``); a call applies exactly the layers the probe
found working and fails closed (the call errors, the code never runs) if one of them then fails.
"""

from __future__ import annotations

import contextlib
import os
import signal
import stat
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

from arpo_tools.python_tool import syscalls
from arpo_tools.python_tool.cgroups import CgroupSlot
from arpo_tools.python_tool.layers import Layer
from arpo_tools.python_tool.limits import SandboxLimits, apply_rlimits

__all__ = [
    "SETUP_FAILED",
    "SandboxPlan",
    "enter_sandbox",
    "prepare_zygote",
    "sandbox_environment",
    "slot_network_namespaces",
]

SETUP_FAILED = 121
"""Exit status of a sandbox that could not apply one of its layers (the code never ran)."""

_PER_CALL = (
    "process-group-kill",
    "cgroup",
    "network-namespace",
    "ipc-uts-namespace",
    "mount-namespace",
    "read-only-root",
    "scratch-tmpfs",
    "private-proc",
    "rlimits",
    "unprivileged-uid",
    "no-capabilities",
    "no-new-privs",
)


@dataclass(slots=True)
class SandboxPlan:
    """What the zygote found possible; ``enabled`` names the per-call steps every call must apply."""

    root: bool
    user_namespace: bool = False
    pid_namespace: bool = False
    enabled: set[str] = field(default_factory=lambda: set(_PER_CALL))
    layers: list[Layer] = field(default_factory=list)
    pidns_fd: int = -1
    netns_fds: list[int] = field(default_factory=list)
    """One empty network namespace per slot (``/proc/self/ns/net`` descriptors); empty: a new one per call."""
    mounts: list[tuple[bytes, bytes, bytes, int, bytes | None]] = field(default_factory=list)
    """The per-call mounts' arguments, encoded once (``_mount_arguments``)."""
    scratch_keep: list[str] = field(default_factory=list)
    """Python's directories that live under ``/tmp`` or ``/dev/shm`` (a venv made in CI or a container): the
    per-call scratch tmpfs would hide them, so each call binds them back, read-only (``_mount_scratch``)."""

    def uid_for(self, limits: SandboxLimits, slot: int) -> int:
        return limits.sandbox_uid_base + slot if self.root else 0


def sandbox_environment() -> dict[str, str]:
    """The whole environment a call sees: nothing of the server's (the zygote adopts it before any fork)."""
    bindir = os.path.dirname(sys.executable)
    return {
        "PATH": f"{bindir}:/usr/local/bin:/usr/bin:/bin",
        "HOME": "/tmp",
        "TMPDIR": "/tmp",
        "USER": "sandbox",
        "LOGNAME": "sandbox",
        "LANG": "C.UTF-8",
        "PYTHONIOENCODING": "utf-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }


# ---------------------------------------------------------------------------------------------- zygote, once


def _write_file(path: str, text: str) -> None:
    with open(path, "w") as handle:
        handle.write(text)


def _enter_user_namespace() -> None:
    """Become uid 0 (with every capability) of a new user namespace where only our own uid is mapped."""
    uid, gid = os.geteuid(), os.getegid()
    syscalls.unshare(syscalls.CLONE_NEWUSER)
    with contextlib.suppress(FileNotFoundError):
        _write_file("/proc/self/setgroups", "deny")
    _write_file("/proc/self/uid_map", f"0 {uid} 1")
    _write_file("/proc/self/gid_map", f"0 {gid} 1")


def _python_paths() -> list[str]:
    """The directories the interpreter reads from, outermost only."""
    cwd = os.getcwd()
    found = {
        os.path.realpath(p)
        for p in [*sys.path, sys.prefix, sys.base_prefix, sys.exec_prefix, os.path.dirname(sys.executable)]
        if p and p != cwd and os.path.isdir(p)
    }
    found.discard("/")
    found.add(os.path.dirname(os.path.realpath(sys.executable)))
    outer: list[str] = []
    for path in sorted(found):
        if not any(path == o or path.startswith(o.rstrip("/") + "/") for o in outer):
            outer.append(path)
    return outer


def _under(path: str, top: str) -> bool:
    return path == top or path.startswith(top.rstrip("/") + "/")


def _searchable(directory: str, uid: int) -> bool:
    st = os.stat(directory)
    if st.st_uid == uid:
        return bool(st.st_mode & stat.S_IXUSR)
    return bool(st.st_mode & stat.S_IXOTH)


def _mask(directory: str, keep: list[str]) -> None:
    """Cover ``directory`` with an empty tmpfs, then bind each path of ``keep`` (below it) back in place."""
    fds = {path: os.open(path, os.O_PATH | os.O_CLOEXEC) for path in keep}
    try:
        syscalls.mount("tmpfs", directory, "tmpfs", syscalls.MS_NOSUID | syscalls.MS_NODEV, "size=1m,mode=0755")
        for path, fd in fds.items():
            os.makedirs(path, mode=0o755, exist_ok=True)
            syscalls.mount(f"/proc/self/fd/{fd}", path, None, syscalls.MS_BIND | syscalls.MS_REC)
    finally:
        for fd in fds.values():
            os.close(fd)


def _base_mount_namespace(limits: SandboxLimits, uid: int, check_search: bool) -> str:
    """Private propagation, masked paths, Python's directories reachable; returns a detail for the report."""
    syscalls.unshare(syscalls.CLONE_NEWNS)
    syscalls.mount(None, "/", None, syscalls.MS_REC | syscalls.MS_PRIVATE)
    needed = _python_paths()
    masked = []
    for directory in limits.masked_paths:
        if not os.path.isdir(directory) or os.path.islink(directory):
            continue
        if any(_under(directory, path) for path in needed):
            continue  # the interpreter lives in it: keep it whole
        _mask(directory, [path for path in needed if _under(path, directory)])
        masked.append(directory)
    if check_search:
        for _ in range(16):  # each round uncovers one unsearchable ancestor; real trees need one or two
            blocked = None
            for path in needed:
                parts = path.strip("/").split("/")
                for depth in range(len(parts)):
                    ancestor = "/" + "/".join(parts[:depth])
                    if not _searchable(ancestor, uid):
                        blocked = ancestor
                        break
                if blocked:
                    break
            if blocked is None:
                break
            _mask(blocked, [path for path in needed if _under(path, blocked)])
            masked.append(f"{blocked} (not searchable by the sandbox uid; Python's directories re-exposed)")
    return "hidden: " + (", ".join(masked) if masked else "nothing (none of the paths exist)")


def _probe_pid_namespace() -> None:
    """unshare(CLONE_NEWPID) + fork + setns back, in a helper process, so a failure cannot break the zygote."""
    helper = os.fork()
    if helper == 0:
        ok = 1
        try:
            own = os.open("/proc/self/ns/pid", os.O_RDONLY)
            syscalls.unshare(syscalls.CLONE_NEWPID)
            inner = os.fork()
            if inner == 0:
                os._exit(0 if os.getpid() == 1 else 1)
            syscalls.setns(own, syscalls.CLONE_NEWPID)
            _, status = os.waitpid(inner, 0)
            again = os.fork()
            if again == 0:
                os._exit(0)
            os.waitpid(again, 0)
            ok = 0 if os.waitstatus_to_exitcode(status) == 0 else 1
        except BaseException:
            ok = 1
        os._exit(ok)
    _, status = os.waitpid(helper, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise OSError("unshare(CLONE_NEWPID), fork, then setns back failed")


def _become_pid_namespace_init() -> None:
    """Continue as PID 1 of a new PID namespace owned by our user namespace (where ``setns`` back is allowed).

    The original process stays behind as a waiter that mirrors the new zygote's exit status; the new zygote dies
    with it (parent-death signal), so killing the pid the server knows still kills everything.
    """
    syscalls.unshare(syscalls.CLONE_NEWPID)
    pid = os.fork()
    if pid == 0:
        syscalls.set_parent_death_signal(signal.SIGKILL)
        return
    os.closerange(3, 1 << 16)  # our copy of the control socket must not keep it open
    signal.signal(signal.SIGTERM, lambda *_: os.kill(pid, signal.SIGKILL))
    while True:
        try:
            _, status = os.waitpid(pid, 0)
            break
        except InterruptedError:
            continue
    os._exit(max(0, os.waitstatus_to_exitcode(status)))


def slot_network_namespaces(count: int) -> list[int]:
    """``count`` new network namespaces (nothing in them but a downed loopback), as open descriptors.

    The calling process ends up back in the network namespace it started in. Raises ``OSError`` (having closed
    whatever it opened) where the kernel refuses.
    """
    own = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    fds: list[int] = []
    try:
        for _ in range(count):
            syscalls.unshare(syscalls.CLONE_NEWNET)
            fds.append(os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC))
    except OSError:
        for fd in fds:
            os.close(fd)
        raise
    finally:
        try:
            syscalls.setns(own, syscalls.CLONE_NEWNET)
        finally:
            os.close(own)
    return fds


def prepare_zygote(limits: SandboxLimits) -> SandboxPlan:
    """Zygote-wide layers; the per-call ones are probed afterwards with ``probe``."""
    plan = SandboxPlan(root=os.geteuid() == 0)
    layers = plan.layers
    if not plan.root:
        outer = os.geteuid()
        try:
            _enter_user_namespace()
            plan.user_namespace = True
            layers.append(Layer("user-namespace", True, f"uid {outer} mapped to 0 inside; no other uid"))
        except OSError as err:
            layers.append(Layer("user-namespace", False, f"not root and no user namespace ({err})"))
    privileged = plan.root or plan.user_namespace
    try:
        if not privileged:
            raise OSError("needs root or a user namespace")
        detail = _base_mount_namespace(limits, plan.uid_for(limits, 0), check_search=plan.root)
        layers.append(Layer("masked-paths", True, detail))
    except OSError as err:
        layers.append(Layer("masked-paths", False, f"no private mount namespace for the zygote ({err})"))
        plan.enabled -= {"mount-namespace", "read-only-root", "scratch-tmpfs", "private-proc"}
    detail = ""
    try:
        if not privileged:
            raise OSError("needs root or a user namespace")
        try:
            _probe_pid_namespace()
        except OSError:  # e.g. root inside a user namespace: setns to the outer PID namespace is refused
            _become_pid_namespace_init()
            _probe_pid_namespace()
            detail = "the zygote is PID 1 of its own namespace, each call PID 1 of one below it"
        plan.pid_namespace = True
        plan.pidns_fd = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
        layers.append(Layer("pid-namespace", True, detail))
    except OSError as err:
        layers.append(Layer("pid-namespace", False, f"{err}; kill -1 and ps reach the sandbox uid's processes"))
        plan.enabled.discard("private-proc")
    if not privileged:
        plan.enabled -= {"network-namespace", "ipc-uts-namespace", "mount-namespace", "read-only-root"}
        plan.enabled -= {"scratch-tmpfs", "private-proc"}
    if not plan.root:
        plan.enabled.discard("unprivileged-uid")
    plan.mounts = _mount_arguments(limits)
    plan.scratch_keep = [path for path in _python_paths() if any(_under(path, m) for m in _SCRATCH_POINTS)]
    if "network-namespace" in plan.enabled:
        with contextlib.suppress(OSError):  # refused: each call makes its own instead (the probe tells if that works)
            plan.netns_fds = slot_network_namespaces(limits.slots)
    return plan


# ---------------------------------------------------------------------------------------------- each call


def _read_only_root(method: list[str]) -> None:
    """Make every mount read-only (and nosuid); appends how to ``method``."""
    method.append(_remount_read_only())


def _remount_read_only() -> str:
    try:
        syscalls.mount_setattr("/", syscalls.MOUNT_ATTR_RDONLY | syscalls.MOUNT_ATTR_NOSUID, recursive=True)
        return "mount_setattr(AT_RECURSIVE)"
    except OSError as err:
        if err.errno not in (38, 22):  # ENOSYS (kernel < 5.12), EINVAL: remount each mount instead
            raise
    with open("/proc/self/mountinfo") as mountinfo:
        points = [(line.split()[4], line.split()[5]) for line in mountinfo]
    for point, options in points:
        flags = syscalls.MS_REMOUNT | syscalls.MS_BIND | syscalls.MS_RDONLY | syscalls.MS_NOSUID
        for name, bit in (("nodev", syscalls.MS_NODEV), ("noexec", syscalls.MS_NOEXEC)):
            if name in options.split(","):
                flags |= bit
        with contextlib.suppress(FileNotFoundError, PermissionError):
            syscalls.mount(None, point.replace("\\040", " "), None, flags)
    return "remount of every mount"


def enter_sandbox(
    plan: SandboxPlan,
    limits: SandboxLimits,
    *,
    slot: int,
    cgroup: CgroupSlot | None,
    base_address_space: int,
    netns_fd: int = -1,
    probe: dict[str, str] | None = None,
) -> None:
    """Apply every enabled per-call layer to the calling (freshly forked, still root) process.

    ``netns_fd``: the slot's network namespace (see ``slot_network_namespaces``), entered and closed; ``-1``: a
    new one. With ``probe`` a dict, try each step and record ``name → "" | error`` in it instead of raising.

    Every page this writes is a copy-on-write fault in a fresh fork, so it stays plain: no closures, the mount
    arguments encoded once in the zygote (``_mount_arguments``).
    """
    enabled = plan.enabled

    def step(name: str, action: Callable[..., object], *args: object) -> None:
        if name not in enabled:
            return
        try:
            action(*args)
        except OSError as err:
            if probe is None:
                raise OSError(err.errno, f"{name}: {err.strerror or err}") from err
            probe[name] = str(err) or type(err).__name__
            enabled.discard(name)
        else:
            if probe is not None:
                probe[name] = ""

    uid = plan.uid_for(limits, slot)
    step("process-group-kill", os.setsid)
    if cgroup is not None:
        step("cgroup", cgroup.join)
        cgroup.close()  # joined: the code gets no handle on cgroup.procs
    if netns_fd >= 0:
        step("network-namespace", syscalls.setns, netns_fd, syscalls.CLONE_NEWNET)
        os.close(netns_fd)  # entered: the code gets no handle on it
    else:
        step("network-namespace", syscalls.unshare, syscalls.CLONE_NEWNET)
    step("ipc-uts-namespace", syscalls.unshare, syscalls.CLONE_NEWIPC | syscalls.CLONE_NEWUTS)
    step("mount-namespace", syscalls.unshare, syscalls.CLONE_NEWNS)
    if "mount-namespace" not in enabled:
        enabled -= {"read-only-root", "scratch-tmpfs", "private-proc"}
    ro_method: list[str] = []
    step("read-only-root", _read_only_root, ro_method)
    mounts = plan.mounts or _mount_arguments(limits)
    step("scratch-tmpfs", _mount_scratch, mounts[:2], plan.scratch_keep)
    if plan.pid_namespace:
        step("private-proc", _mount_all, mounts[2:])
    nproc = limits.max_processes if plan.root else limits.max_processes * limits.slots + 8
    step("rlimits", apply_rlimits, limits, base_address_space, nproc)
    step("unprivileged-uid", _drop_uid, uid)
    step("no-capabilities", syscalls.drop_capabilities)
    step("no-new-privs", syscalls.set_no_new_privs)
    syscalls.set_parent_death_signal(signal.SIGKILL)  # after the uid change, which clears it
    # The environment is the zygote's, already reduced to ``sandbox_environment()`` at its start (see zygote.py).
    os.chdir("/tmp" if "scratch-tmpfs" in enabled else "/")
    if probe is not None and ro_method:
        probe["read-only-root"] = f"ok: {ro_method[0]}"


def _mount_arguments(limits: SandboxLimits) -> list[tuple[bytes, bytes, bytes, int, bytes | None]]:
    """The per-call mounts (scratch /tmp, scratch /dev/shm, /proc) as ``mount(2)`` arguments, encoded."""
    flags = syscalls.MS_NOSUID | syscalls.MS_NODEV
    size = f"size={limits.scratch_mb}m"
    return [
        (b"tmpfs", b"/tmp", b"tmpfs", flags, f"{size},mode=1777,nr_inodes=65536".encode()),
        (b"tmpfs", b"/dev/shm", b"tmpfs", flags, f"{size},mode=1777,nr_inodes=4096".encode()),
        (b"proc", b"/proc", b"proc", flags | syscalls.MS_NOEXEC, None),
    ]


_SCRATCH_POINTS = ("/tmp", "/dev/shm")


def _mount_all(mounts: list[tuple[bytes, bytes, bytes, int, bytes | None]]) -> None:
    for source, target, fstype, flags, data in mounts:
        syscalls.mount(source, target, fstype, flags, data)


def _mount_scratch(mounts: list[tuple[bytes, bytes, bytes, int, bytes | None]], keep: list[str]) -> None:
    """The scratch tmpfs on ``/tmp`` and ``/dev/shm``, then each directory of ``keep`` bound back, read-only.

    The directories are opened (``O_PATH``) before the tmpfs covers them and closed once bound, so the code never
    holds a handle on the tree underneath. A bind copies the flags of its source, which ``read-only-root`` made
    read-only just before; they are set again (``mount_setattr``, where the kernel has it) so the venv stays
    read-only even where that layer is off. Their parents, made in the fresh tmpfs, belong to the sandbox's root
    with mode 0755: the code, once its uid is dropped, cannot write beside them.
    """
    fds = [os.open(path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC) for path in keep]
    try:
        _mount_all(mounts)
        for path, fd in zip(keep, fds, strict=True):
            os.makedirs(path, mode=0o755, exist_ok=True)
            syscalls.mount(f"/proc/self/fd/{fd}", path, None, syscalls.MS_BIND | syscalls.MS_REC)
            try:
                syscalls.mount_setattr(path, syscalls.MOUNT_ATTR_RDONLY | syscalls.MOUNT_ATTR_NOSUID, recursive=True)
            except OSError as err:
                if err.errno not in (38, 22):  # ENOSYS (kernel < 5.12), EINVAL: the copied flags stand
                    raise
    finally:
        for fd in fds:
            os.close(fd)


def _drop_uid(uid: int) -> None:
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)


def probe_report(plan: SandboxPlan, results: dict[str, str], limits: SandboxLimits) -> list[Layer]:
    """Turn the probe child's results into the per-call part of the layer report."""
    layers = list(plan.layers)
    for name in _PER_CALL:
        if name == "cgroup":
            continue
        if name not in results:
            if name == "private-proc" and not plan.pid_namespace:
                layers.append(Layer(name, False, "needs the PID namespace; /proc shows every process"))
            elif name == "unprivileged-uid" and not plan.root:
                layers.append(Layer(name, False, "not root: runs as uid 0 of the zygote's user namespace"))
            elif results.get("mount-namespace"):
                layers.append(Layer(name, False, "needs the mount namespace, which is off"))
            else:
                layers.append(Layer(name, False, "needs root or a user namespace"))
            continue
        error = results[name]
        if error and not error.startswith("ok"):
            layers.append(Layer(name, False, error))
            continue
        detail = ""
        if name == "read-only-root":
            detail = f"every file system read-only ({error[4:]})"
        elif name == "scratch-tmpfs":
            detail = f"/tmp and /dev/shm: private tmpfs of {limits.scratch_mb} MB each; cwd=/tmp"
            if plan.scratch_keep:
                detail += "; Python's directories there bound back read-only: " + ", ".join(plan.scratch_keep)
        elif name == "unprivileged-uid":
            detail = f"uid {limits.sandbox_uid_base}+slot, one per concurrent call"
        elif name == "network-namespace" and plan.netns_fds:
            detail = (
                "one per slot, made once at start and entered by each call of that slot (never two calls at once): "
                "no interface but a downed loopback, which no call can raise, so no network at all"
            )
        layers.append(Layer(name, True, detail))
    layers.append(Layer("scrubbed-environment", True, "only: " + ", ".join(sorted(sandbox_environment()))))
    layers.append(Layer("output-cap", True, f"stdout ≤ {limits.max_output_bytes} bytes; stderr: last lines"))
    return layers
