"""One cgroup per sandbox slot, for the process-count and memory caps that bind even root.

Layout: under the zygote's own cgroup of each controller, ``arpo-python-<zygote pid>/slot-<i>``; a sandbox joins
its slot's cgroups (writes ``0`` to ``cgroup.procs`` through descriptors the zygote opened) before it drops its
uid. Works with cgroup v1 (a ``pids`` and a ``memory`` hierarchy, as on this machine) and with cgroup v2 where the
controllers are delegated to the zygote's cgroup; anything else is reported as off with the reason.

Protections applied here: ``pids.max`` = ``max_processes`` (stops a fork bomb); memory limit = ``memory_mb`` plus
the preloaded interpreter's resident size (pages the call copies from the zygote are charged to it), swap none.
The slot cgroups are created once, at the zygote's start, and reused by every call of their slot (one call at a
time): a call pays only for joining them. Before a slot is reused the zygote checks that it is empty (``pids.current``,
one ``pread``) and otherwise sweeps it (SIGKILL to whatever is left in it); it removes the tree at exit; trees of dead
zygotes are removed at the next start. The OOM-kill counter is read through a descriptor kept open, at each fork and
reap. With two zygotes (see ``zygote.py``) the light one creates the tree, sized on its own resident size: the 64 MB
of headroom covers the pages a call may copy from the full one.
"""

from __future__ import annotations

import contextlib
import os
import signal
from dataclasses import dataclass, field

from arpo_tools.python_tool.layers import Layer

__all__ = ["CgroupSlot", "CgroupTree"]

_ROOT = "/sys/fs/cgroup"
_PREFIX = "arpo-python-"


def _read_counter(fd: int, key: str) -> int | None:
    """The value of ``key`` in a ``key value`` file (or of the whole file when ``key`` is empty), by ``pread``."""
    text = os.pread(fd, 4096, 0).decode("ascii", "replace")
    if not key:
        return int(text.strip() or 0)
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name == key:
            return int(value)
    return None


@dataclass(slots=True)
class CgroupSlot:
    """The cgroup directories of one slot (one per controller) and open ``cgroup.procs`` descriptors.

    ``events_fd`` (``memory.events`` or ``memory.oom_control``) and ``pids_current_fd`` (``pids.current``) stay open
    in the zygote (``-1`` where absent); a sandbox closes them with everything else it does not need.
    """

    dirs: list[str]
    procs_fds: list[int] = field(default_factory=list)
    memory_dir: str | None = None
    events_fd: int = -1
    pids_current_fd: int = -1

    def join(self) -> None:
        """Move the calling process into every cgroup of the slot."""
        for fd in self.procs_fds:
            os.write(fd, b"0")

    def open_counters(self) -> None:
        """Open the files read for each call (once, in the zygote)."""
        if self.memory_dir is not None:
            for name in ("memory.events", "memory.oom_control"):
                with contextlib.suppress(OSError):
                    self.events_fd = os.open(os.path.join(self.memory_dir, name), os.O_RDONLY | os.O_CLOEXEC)
                    break
        for directory in self.dirs:
            with contextlib.suppress(OSError):
                self.pids_current_fd = os.open(os.path.join(directory, "pids.current"), os.O_RDONLY | os.O_CLOEXEC)
                break

    def is_empty(self) -> bool:
        """No process left in the slot: ``pids.current`` is 0 (one ``pread``), else the ``cgroup.procs`` lists."""
        if self.pids_current_fd >= 0:
            with contextlib.suppress(OSError, ValueError):
                if _read_counter(self.pids_current_fd, "") == 0:
                    return True
        return not self.pids()

    def pids(self) -> list[int]:
        found: set[int] = set()
        for directory in self.dirs:
            try:
                with open(os.path.join(directory, "cgroup.procs")) as procs:
                    found.update(int(line) for line in procs if line.strip())
            except OSError:
                continue
        return sorted(found)

    def sweep(self, rounds: int = 50) -> bool:
        """SIGKILL everything left in the slot; True when it is empty."""
        if self.is_empty():
            return True
        for _ in range(rounds):
            pids = self.pids()
            if not pids:
                return True
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            os.sched_yield()
        return not self.pids()

    def oom_kills(self) -> int:
        """How many processes the kernel's OOM killer has killed in this slot's memory cgroup so far."""
        if self.memory_dir is None:
            return 0
        if self.events_fd >= 0:
            with contextlib.suppress(OSError, ValueError):
                return _read_counter(self.events_fd, "oom_kill") or 0
        for name in ("memory.events", "memory.oom_control"):
            try:
                with open(os.path.join(self.memory_dir, name)) as events:
                    for line in events:
                        key, _, value = line.partition(" ")
                        if key == "oom_kill":
                            return int(value)
            except OSError:
                continue
        return 0

    def close(self) -> None:
        """Close every descriptor of the slot."""
        for fd in [*self.procs_fds, self.events_fd, self.pids_current_fd]:
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.procs_fds.clear()
        self.events_fd = self.pids_current_fd = -1


def _mounts() -> tuple[dict[str, str], str | None]:
    """(controller → v1 mount point, the cgroup v2 mount point)."""
    v1: dict[str, str] = {}
    v2 = None
    with open("/proc/self/mountinfo") as mountinfo:
        for line in mountinfo:
            head, _, tail = line.partition(" - ")
            fstype, _, options = tail.split()[:3]
            point = head.split()[4]
            if fstype == "cgroup2" and v2 is None:
                v2 = point
            elif fstype == "cgroup":
                for option in options.split(","):
                    v1.setdefault(option, point)
    return v1, v2


def _own_paths() -> tuple[dict[str, str], str | None]:
    v1: dict[str, str] = {}
    v2 = None
    with open("/proc/self/cgroup") as own:
        for line in own:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            if controllers == "":
                v2 = path
            for controller in controllers.split(","):
                v1[controller] = path
    return v1, v2


def _write(path: str, value: str) -> None:
    with open(path, "w") as handle:
        handle.write(value)


def _remove_tree(base: str) -> None:
    if not os.path.isdir(base):
        return
    for name in os.listdir(base):
        if name.startswith("slot-"):
            with contextlib.suppress(OSError):
                os.rmdir(os.path.join(base, name))
    with contextlib.suppress(OSError):
        os.rmdir(base)


def _remove_stale(parent: str) -> None:
    with contextlib.suppress(OSError):
        for name in os.listdir(parent):
            if name.startswith(_PREFIX) and name[len(_PREFIX) :].isdigit():
                pid = int(name[len(_PREFIX) :])
                if not os.path.exists(f"/proc/{pid}"):
                    _remove_tree(os.path.join(parent, name))


class CgroupTree:
    """The slot cgroups of one zygote, created at its start and removed at its exit."""

    def __init__(self, slots: list[CgroupSlot], bases: list[str]) -> None:
        self.slots = slots
        self._bases = bases

    @classmethod
    def create(cls, n_slots: int, *, max_processes: int, memory_bytes: int) -> tuple[CgroupTree | None, list[Layer]]:
        """Build the tree where the kernel lets us; the second value reports ``cgroup-pids`` and ``cgroup-memory``."""
        try:
            v1_mounts, v2_mount = _mounts()
            v1_paths, v2_path = _own_paths()
        except OSError as err:
            reason = f"cannot read /proc/self/mountinfo or /proc/self/cgroup ({err})"
            return None, [Layer("cgroup-pids", False, reason), Layer("cgroup-memory", False, reason)]
        dirs_per_slot: list[list[str]] = [[] for _ in range(n_slots)]
        memory_dirs: list[str | None] = [None] * n_slots
        bases: list[str] = []
        layers: list[Layer] = []
        settings = {
            "pids": [("pids.max", str(max_processes))],
            "memory": [
                ("memory.limit_in_bytes", str(memory_bytes)),
                ("memory.memsw.limit_in_bytes", str(memory_bytes)),
            ],
        }
        v2_settings = {
            "pids": [("pids.max", str(max_processes))],
            "memory": [("memory.max", str(memory_bytes)), ("memory.swap.max", "0")],
        }
        for controller in ("pids", "memory"):
            try:
                if controller in v1_mounts and controller in v1_paths:
                    parent = os.path.join(v1_mounts[controller], v1_paths[controller].lstrip("/"))
                    slot_dirs = cls._make(parent, n_slots, settings[controller], enable=None)
                    where = f"cgroup v1 {parent}"
                elif v2_mount is not None and v2_path is not None:
                    parent = os.path.join(v2_mount, v2_path.lstrip("/"))
                    slot_dirs = cls._make(parent, n_slots, v2_settings[controller], enable=controller)
                    where = f"cgroup v2 {parent}"
                else:
                    layers.append(Layer(f"cgroup-{controller}", False, f"no {controller} controller is mounted"))
                    continue
            except OSError as err:
                layers.append(Layer(f"cgroup-{controller}", False, f"cannot create a {controller} cgroup ({err})"))
                continue
            bases.append(os.path.dirname(slot_dirs[0]))
            for i, directory in enumerate(slot_dirs):
                dirs_per_slot[i].append(directory)
                if controller == "memory":
                    memory_dirs[i] = directory
            limit = max_processes if controller == "pids" else f"{memory_bytes // (1024 * 1024)} MB"
            layers.append(Layer(f"cgroup-{controller}", True, f"{where}: {limit} per call"))
        if not bases:
            return None, layers
        slots = []
        for i in range(n_slots):
            slot = CgroupSlot(dirs_per_slot[i], memory_dir=memory_dirs[i])
            for directory in slot.dirs:
                slot.procs_fds.append(os.open(os.path.join(directory, "cgroup.procs"), os.O_WRONLY | os.O_CLOEXEC))
            slot.open_counters()
            slots.append(slot)
        return cls(slots, bases), layers

    @staticmethod
    def _make(parent: str, n_slots: int, settings: list[tuple[str, str]], *, enable: str | None) -> list[str]:
        _remove_stale(parent)
        base = os.path.join(parent, f"{_PREFIX}{os.getpid()}")
        os.makedirs(base, exist_ok=True)
        try:
            if enable is not None:  # cgroup v2: the controller must be enabled on the way down
                with contextlib.suppress(OSError):
                    _write(os.path.join(parent, "cgroup.subtree_control"), f"+{enable}")
                _write(os.path.join(base, "cgroup.subtree_control"), f"+{enable}")
            dirs = []
            for i in range(n_slots):
                directory = os.path.join(base, f"slot-{i}")
                os.makedirs(directory, exist_ok=True)
                for name, value in settings:
                    target = os.path.join(directory, name)
                    if name.startswith("memory.memsw") and not os.path.exists(target):
                        continue  # swap accounting is off on this kernel: nothing to cap
                    _write(target, value)
                dirs.append(directory)
            return dirs
        except OSError:
            _remove_tree(base)
            raise

    def remove(self) -> None:
        for slot in self.slots:
            slot.sweep()
            slot.close()
        for base in self._bases:
            _remove_tree(base)
