"""The sandbox's limits as the zygote sees them, and the resource limits (rlimits) applied to each call.

``SandboxLimits`` is the standard-library twin of the pydantic ``PythonToolConfig``: the server sends it to the
zygote as JSON, so the zygote (which every call is forked from) never imports pydantic or mcp and stays small.

Protections applied here (always available, whatever the kernel allows otherwise):

* ``RLIMIT_AS``: address space = the preloaded interpreter's size + ``memory_mb`` (a big allocation raises
  ``MemoryError`` in the code rather than hurting the machine);
* ``RLIMIT_CPU``: ``cpu_seconds`` soft (SIGXCPU), one more second hard (SIGKILL);
* ``RLIMIT_FSIZE``: no file larger than the scratch directory;
* ``RLIMIT_NPROC``: ``max_processes`` for the sandbox's uid (binds only a non-root uid: the caller drops to one);
* ``RLIMIT_NOFILE`` 256, ``RLIMIT_CORE`` 0 (no core dumps), ``RLIMIT_MEMLOCK`` 0.
"""

from __future__ import annotations

import dataclasses
import json
import resource
from dataclasses import dataclass
from typing import Any

__all__ = ["SandboxLimits", "apply_rlimits", "lower_cpu_limit"]

_MB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class SandboxLimits:
    """Per-call limits and zygote settings; see ``PythonToolConfig`` for what each one means."""

    timeout_s: float = 30.0
    cpu_seconds: int = 30
    memory_mb: int = 1024
    max_processes: int = 64
    max_output_bytes: int = 16_384
    stderr_tail_lines: int = 20
    scratch_mb: int = 64
    preload: tuple[str, ...] = ("math", "numpy", "sympy")
    light_preload: tuple[str, ...] = ("math", "numpy")
    max_concurrent: int = 8
    prefork: int = 4
    sandbox_uid_base: int = 0x70000000
    masked_paths: tuple[str, ...] = ("/run", "/home", "/root", "/mnt", "/media", "/srv")

    @property
    def full_only(self) -> tuple[str, ...]:
        """Modules of ``preload`` that only the full zygote imports; empty: a single zygote (see ``zygote.py``)."""
        if not self.light_preload:
            return ()
        return tuple(name for name in self.preload if name not in self.light_preload)

    @property
    def light_modules(self) -> tuple[str, ...]:
        """What the first zygote imports: all of ``preload`` with a single zygote, else its light part."""
        return tuple(name for name in self.preload if name not in self.full_only)

    @property
    def full_prefork(self) -> int:
        """Sandboxes the full zygote keeps forked ahead (the light one keeps ``prefork``)."""
        return (self.prefork + 1) // 2 if self.full_only else 0

    @property
    def slots(self) -> int:
        """Sandboxes alive at once: those running code plus those forked ahead and waiting."""
        return self.max_concurrent + self.prefork + self.full_prefork

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> SandboxLimits:
        raw: dict[str, Any] = json.loads(text)
        for key in ("preload", "light_preload", "masked_paths"):
            raw[key] = tuple(raw[key])
        return cls(**raw)


def _set(which: int, soft: int, hard: int | None = None) -> None:
    hard = soft if hard is None else hard
    _, current_hard = resource.getrlimit(which)
    if current_hard != resource.RLIM_INFINITY:
        hard = min(hard, current_hard)
        soft = min(soft, hard)
    resource.setrlimit(which, (soft, hard))


def apply_rlimits(limits: SandboxLimits, base_address_space: int, nproc: int) -> None:
    """Set the hard limits of the calling process (irreversible for a process without CAP_SYS_RESOURCE)."""
    _set(resource.RLIMIT_AS, base_address_space + limits.memory_mb * _MB)
    _set(resource.RLIMIT_CPU, limits.cpu_seconds, limits.cpu_seconds + 1)
    _set(resource.RLIMIT_FSIZE, limits.scratch_mb * _MB)
    _set(resource.RLIMIT_NPROC, nproc)
    _set(resource.RLIMIT_NOFILE, 256)
    _set(resource.RLIMIT_CORE, 0)
    _set(resource.RLIMIT_MEMLOCK, 0)


def lower_cpu_limit(seconds: float) -> None:
    """Cap the CPU time still allowed from now on (a call may ask for less than the configured limit)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    used = usage.ru_utime + usage.ru_stime
    soft = max(1, int(used + seconds + 0.999))
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    if hard == resource.RLIM_INFINITY or soft + 1 <= hard:
        resource.setrlimit(resource.RLIMIT_CPU, (soft, soft + 1))
