"""Thin ctypes wrappers for the Linux calls the sandbox needs and Python 3.10/3.11 lacks.

``unshare``/``setns`` (``os.unshare`` only exists from 3.12), ``mount``/``umount2``, ``mount_setattr`` (Linux ≥ 5.12:
makes a whole mount tree read-only in one call), ``prctl`` (no-new-privs, parent-death signal), ``capset`` (drop
every capability) and ``fork_without_python_hooks`` (libc's ``fork`` without CPython's at-fork work). Each raises
``OSError`` with the errno on failure. No protection lives here: ``sandbox.py`` decides what to apply; this module
only makes the calls. Standard library only (the zygote imports it).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

__all__ = [
    "AT_RECURSIVE",
    "CLONE_NEWIPC",
    "CLONE_NEWNET",
    "CLONE_NEWNS",
    "CLONE_NEWPID",
    "CLONE_NEWUSER",
    "CLONE_NEWUTS",
    "MOUNT_ATTR_NODEV",
    "MOUNT_ATTR_NOSUID",
    "MOUNT_ATTR_RDONLY",
    "MS_BIND",
    "MS_NODEV",
    "MS_NOEXEC",
    "MS_NOSUID",
    "MS_PRIVATE",
    "MS_RDONLY",
    "MS_REC",
    "MS_REMOUNT",
    "collapse_heap_to_huge_pages",
    "drop_capabilities",
    "fork_without_python_hooks",
    "mount",
    "mount_setattr",
    "prctl",
    "set_no_new_privs",
    "set_parent_death_signal",
    "setns",
    "unshare",
]

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REMOUNT = 0x20
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 0x40000

MOUNT_ATTR_RDONLY = 0x1
MOUNT_ATTR_NOSUID = 0x2
MOUNT_ATTR_NODEV = 0x4
AT_RECURSIVE = 0x8000
AT_FDCWD = -100

_PR_SET_PDEATHSIG = 1
_PR_SET_NO_NEW_PRIVS = 38
# mount_setattr has the same number on every architecture (it is newer than the unified syscall table).
_SYS_MOUNT_SETATTR = 442

_libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_libc.unshare.argtypes = [ctypes.c_int]
_libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]
_libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
_libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
_libc_keeping_gil = ctypes.PyDLL(ctypes.util.find_library("c") or None, use_errno=True)  # as os.fork: GIL held
_libc_keeping_gil.fork.restype = ctypes.c_int
_libc_keeping_gil.fork.argtypes = []
_MADV_COLLAPSE = 25
_HUGE = 1 << 21


class _MountAttr(ctypes.Structure):
    _fields_ = [
        ("attr_set", ctypes.c_uint64),
        ("attr_clr", ctypes.c_uint64),
        ("propagation", ctypes.c_uint64),
        ("userns_fd", ctypes.c_uint64),
    ]


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


# Built once: a freshly forked sandbox only makes the calls (every object it creates costs page copies).
_MOUNT_ATTR = _MountAttr(0, 0, 0, 0)
_MOUNT_SETATTR_ARGS = (ctypes.c_long(_SYS_MOUNT_SETATTR), ctypes.c_int(AT_FDCWD))
_MOUNT_ATTR_SIZE = ctypes.c_size_t(ctypes.sizeof(_MountAttr))


def unshare(flags: int) -> None:
    """Move the calling process into new namespaces (``CLONE_NEW*`` flags)."""
    _check(_libc.unshare(flags), "unshare")


def setns(fd: int, nstype: int) -> None:
    """Join the namespace that ``fd`` (an open ``/proc/PID/ns/*`` file) refers to."""
    _check(_libc.setns(fd, nstype), "setns")


def _encode(value: str | bytes | None) -> bytes | None:
    return value if value is None or isinstance(value, bytes) else os.fsencode(value)


def mount(
    source: str | bytes | None,
    target: str | bytes,
    fstype: str | bytes | None,
    flags: int,
    data: str | bytes | None = None,
) -> None:
    """mount(2); the strings may come already encoded (as the per-call mounts do, see ``sandbox.py``)."""
    path = _encode(target)
    if _libc.mount(_encode(source), path, _encode(fstype), flags, _encode(data)) != 0:
        _check(-1, f"mount {os.fsdecode(path or b'')}")


def mount_setattr(path: str, attr_set: int, *, recursive: bool = True) -> None:
    """Set mount attributes (``MOUNT_ATTR_*``) on ``path``'s mount, and on every mount below it if recursive."""
    _MOUNT_ATTR.attr_set = attr_set
    flags = AT_RECURSIVE if recursive else 0
    result = _libc.syscall(
        *_MOUNT_SETATTR_ARGS,
        ctypes.c_char_p(os.fsencode(path)),
        ctypes.c_uint(flags),
        ctypes.byref(_MOUNT_ATTR),
        _MOUNT_ATTR_SIZE,
    )
    _check(0 if result == 0 else -1, f"mount_setattr {path}")


def prctl(option: int, arg2: int = 0) -> None:
    _check(_libc.prctl(option, arg2, 0, 0, 0), f"prctl({option})")


def set_no_new_privs() -> None:
    """PR_SET_NO_NEW_PRIVS: no exec may ever gain privileges (setuid binaries, file capabilities)."""
    prctl(_PR_SET_NO_NEW_PRIVS, 1)


def set_parent_death_signal(signum: int) -> None:
    """PR_SET_PDEATHSIG: the kernel sends ``signum`` when the parent exits (cleared by a uid change: set it after)."""
    prctl(_PR_SET_PDEATHSIG, signum)


_CAP_HEADER = _CapHeader(0x20080522, 0)
_NO_CAPS = (_CapData * 2)()  # built once here: a sandbox only makes the call (fewer pages to copy after its fork)


def drop_capabilities() -> None:
    """Empty the effective, permitted and inheritable capability sets (capset, version 3: 64 capabilities)."""
    _CAP_HEADER.version = 0x20080522
    _CAP_HEADER.pid = 0
    _check(_libc.capset(ctypes.byref(_CAP_HEADER), ctypes.byref(_NO_CAPS)), "capset")


def fork_without_python_hooks() -> int:
    """fork(2) through libc (its ``pthread_atfork`` handlers run), without ``os.fork``'s interpreter work.

    ``os.fork`` also re-initialises the interpreter's locks and runs the ``os.register_at_fork`` callbacks in the
    child (``threading``'s and ``random``'s once sympy is loaded): ≈ 200 page faults, ≈ 0.7 ms of CPU per fork of
    the zygote. In a process with a single thread, which holds the GIL and is not importing anything, those locks
    are already free, so the child's interpreter is sound without that work; the caller must check that, and
    redo in the child whatever the callbacks it skips would have done (``zygote.py`` does). Returns as ``fork``.
    """
    pid = int(_libc_keeping_gil.fork())
    if pid < 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"fork: {os.strerror(errno)}")
    return pid


def collapse_heap_to_huge_pages() -> int:
    """Back the anonymous read-write memory with 2 MiB pages where possible (MADV_COLLAPSE, Linux ≥ 6.1).

    A fork copies one entry per huge page instead of 512, so each call's fork and exit cost less; the pages a
    call writes are still copied 4 KiB at a time. One 2 MiB range per madvise, since one failing range would stop
    a longer one. Returns the bytes collapsed; 0 where the kernel cannot.
    """
    done = 0
    with open("/proc/self/maps") as maps:
        regions = [line.split() for line in maps]
    for fields in regions:
        if not fields[1].startswith("rw") or (len(fields) > 5 and fields[5] != "[heap]"):
            continue
        low, high = (int(x, 16) for x in fields[0].split("-"))
        for start in range((low + _HUGE - 1) & ~(_HUGE - 1), high & ~(_HUGE - 1), _HUGE):
            if _libc.madvise(start, _HUGE, _MADV_COLLAPSE) == 0:
                done += _HUGE
    return done
