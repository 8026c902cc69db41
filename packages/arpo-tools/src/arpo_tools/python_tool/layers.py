"""The report of which isolation layers are active: one ``Layer`` per protection, with why it is off when it is.

The zygote probes every layer once at start (``sandbox.probe``) and sends the list to the server, which shows it
in the ``sandbox://layers`` resource, in a log line on stderr, and through ``probe_layers()``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["LAYER_NAMES", "Layer", "format_layers"]

LAYER_NAMES: dict[str, str] = {
    "pid-namespace": "own PID namespace: sees and signals only its own processes; all die when the call ends",
    "network-namespace": (
        "own network namespace (one per slot, never two calls in one at once): no interface but a downed "
        "loopback, so no network at all"
    ),
    "ipc-uts-namespace": "own IPC and hostname namespaces",
    "mount-namespace": "own mount namespace (nothing it mounts is seen outside)",
    "read-only-root": "every file system read-only",
    "scratch-tmpfs": "/tmp (and /dev/shm) a private, size-capped tmpfs; the working directory",
    "private-proc": "/proc shows only the call's own processes",
    "masked-paths": "/run, /home, /root … hidden behind empty directories (Python's own paths re-exposed)",
    "cgroup-pids": "cgroup pids.max: a process-count cap that binds even root",
    "cgroup-memory": "cgroup memory limit",
    "rlimits": "RLIMIT_AS, RLIMIT_CPU, RLIMIT_FSIZE, RLIMIT_NPROC, RLIMIT_NOFILE, RLIMIT_CORE",
    "unprivileged-uid": "runs as an unprivileged uid (one per concurrent call), so RLIMIT_NPROC binds",
    "user-namespace": "the zygote runs in its own user namespace (used when it is not root)",
    "no-capabilities": "every capability dropped",
    "no-new-privs": "PR_SET_NO_NEW_PRIVS: no setuid binary or file capability can raise privileges",
    "process-group-kill": "own session; the wall-clock timeout kills the whole group",
    "scrubbed-environment": "a minimal environment; none of the server's variables",
    "output-cap": "stdout kept up to max_output_bytes, stderr's tail only",
}


@dataclass(frozen=True, slots=True)
class Layer:
    """One protection and whether it applies to every call."""

    name: str
    active: bool
    detail: str = ""

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "active": self.active, "detail": self.detail}

    @classmethod
    def from_dict(cls, raw: dict[str, object]) -> Layer:
        return cls(str(raw["name"]), bool(raw["active"]), str(raw.get("detail", "")))


def format_layers(layers: Iterable[Layer]) -> str:
    """One line per layer: ``[on ] name: detail`` / ``[off] name: why``."""
    lines = []
    for layer in layers:
        what = layer.detail or LAYER_NAMES.get(layer.name, "")
        lines.append(f"[{'on ' if layer.active else 'off'}] {layer.name}: {what}")
    return "\n".join(lines)
