"""``PythonToolConfig``: the python tool server's settings (pydantic, frozen, unknown keys refused).

Every field says its default and, where the paper's reference code has one, the reference's value. The zygote
gets these as a ``SandboxLimits`` (standard library only), see ``to_limits``.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from arpo_tools.python_tool.limits import SandboxLimits

__all__ = ["PythonToolConfig"]


class PythonToolConfig(BaseModel):
    """Limits and sandbox settings of the ``python`` MCP tool."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    timeout_s: float = Field(30.0, gt=0, le=3600)
    """Wall-clock limit of one call, seconds; the whole process group is killed at it. Default 30 (the reference
    allows 120 s with no sandbox). A call's own ``timeout`` argument may lower it, never raise it."""
    cpu_seconds: int = Field(30, ge=1, le=3600)
    """CPU time limit of one call (RLIMIT_CPU), seconds. Default 30."""
    memory_mb: int = Field(1024, ge=32, le=1 << 20)
    """Memory one call may add to the preloaded interpreter (RLIMIT_AS on top of its size; cgroup limit), MiB.
    Default 1024."""
    max_processes: int = Field(64, ge=1, le=4096)
    """Processes and threads one call may have (cgroup pids.max and RLIMIT_NPROC). Default 64."""
    max_output_bytes: int = Field(8192, ge=256, le=16 << 20)
    """stdout kept for the model; the rest is counted and dropped (the result says so). Also the cap on the
    stderr tail. Default 8192."""
    stderr_tail_lines: int = Field(20, ge=1, le=1000)
    """Lines of stderr (a traceback's end) shown to the model. Default 20."""
    scratch_mb: int = Field(64, ge=1, le=1 << 16)
    """Size of the writable scratch tmpfs at /tmp (and of /dev/shm); also the largest file (RLIMIT_FSIZE), MiB.
    Default 64."""
    preload: tuple[str, ...] = ("math", "numpy", "sympy")
    """Modules the zygote imports once, so no call pays for them. A missing one is reported, not fatal.
    Default math, numpy, sympy."""
    light_preload: tuple[str, ...] = ("math", "numpy")
    """Where ``preload`` has other modules: a second, lighter zygote imports only these, and runs every call whose
    code names none of the others (as a word: ``sympy``). A smaller process forks and exits faster: ≈ 1.5 ms of CPU
    less per call here, a quarter of what a trivial call costs. Calls naming one of the others run in the full
    zygote, forked from the light one (and so sharing its pages). Default math, numpy; empty: one zygote."""
    max_concurrent: int = Field(8, ge=1, le=256)
    """Calls run at once; more wait their turn (each has its own uid and cgroups). Default 8."""
    prefork: int = Field(4, ge=0, le=64)
    """Sandboxes forked and set up ahead of the calls that will use them (each still runs exactly one call).
    Default 4 (with 2 on a loaded 2-core machine, p50 was ≈ 1.5 ms worse); 0 forks at call time. With two
    zygotes (``light_preload``) the full one keeps half as many, rounded up."""
    max_code_chars: int = Field(100_000, ge=1, le=16 << 20)
    """Longest ``code`` accepted. Default 100,000 characters."""
    sandbox_uid_base: int = Field(0x70000000, ge=1000, le=(1 << 32) - 1 - 4096)
    """First of the unprivileged uids (one per slot) calls run as when the server is root. Default 0x70000000,
    above login and container sub-uid ranges."""
    masked_paths: tuple[str, ...] = ("/run", "/home", "/root", "/mnt", "/media", "/srv")
    """Directories hidden behind an empty tmpfs (Python's own directories inside them stay visible).
    Default /run, /home, /root, /mnt, /media, /srv."""
    required_layers: tuple[str, ...] = ()
    """Layers (names as in ``sandbox://layers``) without which calls are refused with an error rather than run
    with less isolation. Default none: run with whatever the kernel allows, and report it."""

    @model_validator(mode="after")
    def _check(self) -> PythonToolConfig:
        bad = [p for p in self.masked_paths if not p.startswith("/") or p.rstrip("/") in ("", "/tmp", "/proc")]
        if bad:
            raise ValueError(f"masked_paths {bad} must be absolute directories other than /, /tmp and /proc")
        return self

    def to_limits(self) -> SandboxLimits:
        """The zygote's view of this config."""
        return SandboxLimits(
            timeout_s=self.timeout_s,
            cpu_seconds=self.cpu_seconds,
            memory_mb=self.memory_mb,
            max_processes=self.max_processes,
            max_output_bytes=self.max_output_bytes,
            stderr_tail_lines=self.stderr_tail_lines,
            scratch_mb=self.scratch_mb,
            preload=self.preload,
            light_preload=self.light_preload,
            max_concurrent=self.max_concurrent,
            prefork=self.prefork,
            sandbox_uid_base=self.sandbox_uid_base,
            masked_paths=self.masked_paths,
        )
