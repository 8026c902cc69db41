"""Durable file-system primitives: fsync of files and folders, and atomic (temp + fsync + rename) writes.

Why both kinds of fsync: ``fsync(file)`` makes a file's *data* durable, but the *name* that points to it lives in
its parent folder, which is a separate object on disk. After ``rename(a, b)`` or creating a file, only an fsync of
the parent folder makes the new name survive a power loss or kernel crash; without it a "committed" checkpoint
can come back after a reboot as the old name, or as a name whose files are empty.
"""

from __future__ import annotations

import contextlib
import errno
import os
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

__all__ = ["TMP_MARKER", "atomic_write", "atomic_write_bytes", "fsync_dir", "fsync_file", "fsync_paths", "walk_files"]

# Every temporary file this package writes has this in its name, so a commit can leave out one a crash left behind.
TMP_MARKER = ".arpo-tmp-"

# fsync on a folder is refused with these by some file systems (some FUSE and network mounts); the rename is still
# atomic there, only its durability across a power loss is the file system's business.
_DIR_FSYNC_UNSUPPORTED = {errno.EINVAL, errno.ENOTSUP, errno.EBADF, errno.EACCES, errno.EPERM}


def fsync_file(path: Path) -> None:
    """Flush a file's data and size to stable storage (opened read-only: fsync flushes the inode, not the fd)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    """Flush a folder's entries (the names created, renamed or removed in it) to stable storage."""
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:  # pragma: no cover - platform-specific
        if exc.errno in _DIR_FSYNC_UNSUPPORTED:
            return
        raise
    try:
        os.fsync(fd)
    except OSError as exc:  # pragma: no cover - platform-specific
        if exc.errno not in _DIR_FSYNC_UNSUPPORTED:
            raise
    finally:
        os.close(fd)


def fsync_paths(paths: Iterable[Path]) -> None:
    """Fsync files a rank wrote, then their parent folders (each once).

    On a multi-node shared file system each rank should call this on its own files before the trainer's barrier:
    rank 0's fsync at commit only flushes what its own node has cached.
    """
    parents: dict[Path, None] = {}
    for path in paths:
        fsync_file(path)
        parents[path.parent] = None
    for parent in parents:
        fsync_dir(parent)


def walk_files(folder: Path) -> Iterator[Path]:
    """Every regular file under ``folder`` (recursively, symlinks not followed), in a stable sorted order."""
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        for name in sorted(filenames):
            yield Path(dirpath) / name


def _tmp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}{TMP_MARKER}{os.getpid()}-{uuid.uuid4().hex[:8]}")


def atomic_write(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Write ``path`` so that readers see either the old file or the whole new one, never a part.

    The data goes to a temporary file beside ``path`` (same folder, hence same file system), which is fsynced and then
    ``os.replace``-d over ``path`` (atomic on POSIX), and the folder is fsynced so the new name is durable.
    """
    tmp = _tmp_name(path)
    try:
        with open(tmp, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """``atomic_write`` of a bytes object."""

    def write(handle: BinaryIO) -> None:
        handle.write(data)

    atomic_write(path, write)
