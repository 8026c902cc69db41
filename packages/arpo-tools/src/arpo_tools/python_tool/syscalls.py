"""Thin ctypes wrappers for the Linux calls the sandbox needs and Python 3.10/3.11 lacks.

``unshare``/``setns`` (``os.unshare`` only exists from 3.12), ``mount``/``umount2``, ``mount_setattr`` (Linux ≥ 5.12:
makes a whole mount tree read-only in one call), ``prctl`` (no-new-privs, parent-death signal) and ``capset`` (drop
every capability). Each raises ``OSError`` with the errno on failure. No protection lives here: ``sandbox.py``
decides what to apply; this module only makes the calls. Standard library only (the zygote imports it).
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
_libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
_libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
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


def unshare(flags: int) -> None:
    """Move the calling process into new namespaces (``CLONE_NEW*`` flags)."""
    _check(_libc.unshare(ctypes.c_int(flags)), "unshare")


def setns(fd: int, nstype: int) -> None:
    """Join the namespace that ``fd`` (an open ``/proc/PID/ns/*`` file) refers to."""
    _check(_libc.setns(ctypes.c_int(fd), ctypes.c_int(nstype)), "setns")


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    """mount(2)."""

    def enc(value: str | None) -> bytes | None:
        return None if value is None else os.fsencode(value)

    _check(_libc.mount(enc(source), enc(target), enc(fstype), flags, enc(data)), f"mount {target}")


def mount_setattr(path: str, attr_set: int, *, recursive: bool = True) -> None:
    """Set mount attributes (``MOUNT_ATTR_*``) on ``path``'s mount, and on every mount below it if recursive."""
    attr = _MountAttr(attr_set, 0, 0, 0)
    flags = AT_RECURSIVE if recursive else 0
    result = _libc.syscall(
        ctypes.c_long(_SYS_MOUNT_SETATTR),
        ctypes.c_int(AT_FDCWD),
        ctypes.c_char_p(os.fsencode(path)),
        ctypes.c_uint(flags),
        ctypes.byref(attr),
        ctypes.c_size_t(ctypes.sizeof(attr)),
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


def drop_capabilities() -> None:
    """Empty the effective, permitted and inheritable capability sets (capset, version 3: 64 capabilities)."""
    header = _CapHeader(0x20080522, 0)
    data = (_CapData * 2)()
    _check(_libc.capset(ctypes.byref(header), ctypes.byref(data)), "capset")


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
