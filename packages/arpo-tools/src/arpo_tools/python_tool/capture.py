"""What one call printed, capped: the relay's record of a sandbox, and the outcome it sends back.

Protections applied here (the output cap): stdout keeps its first ``max_output_bytes`` and only counts the rest;
stderr keeps its last ``max_output_bytes`` (a traceback's end is what matters); reads are non-blocking and at most
64 × 64 KiB per wake-up, so a sandbox printing without end can neither exhaust the relay's memory nor starve the
other calls. The outcome is JSON for ``result.RunOutcome``.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass, field
from typing import Any

__all__ = ["SETUP_FAILED", "Sandbox"]

SETUP_FAILED = 121
"""Exit status of a sandbox that could not apply one of its layers (``sandbox.SETUP_FAILED``, repeated here so
the relay imports nothing of the sandbox set-up)."""


@dataclass(eq=False, slots=True)
class Sandbox:
    """One forked sandbox as the relay sees it: its descriptors, what it printed, how it ended."""

    pid: int
    slot: int
    ctl: socket.socket
    out: int
    err: int
    cap: int
    stdout: bytearray = field(default_factory=bytearray)
    stdout_total: int = 0
    stderr: bytearray = field(default_factory=bytearray)
    stderr_total: int = 0
    reported_exit: int | None = None
    """The status the code's process reported itself (``exit N``), before it exited."""
    exit_code: int | None = None
    """From the zygote's reap: negative for a signal."""
    cpu_s: float = 0.0
    oom_killed: bool = False
    started: float = 0.0
    timeout_s: float = 0.0
    timed_out: bool = False
    call: Any = None
    """The relay's call this sandbox runs, while it runs one."""
    outbox: bytes = b""
    """Request bytes not yet written to the sandbox's control socket."""
    finished: bool = False
    zygote: Any = None
    """The relay's link to the zygote that forked it (where ``K`` goes)."""

    def read(self, fd: int) -> bool:
        """Read what is there on stdout or stderr; False at end of file."""
        for _ in range(64):
            try:
                data = os.read(fd, 1 << 16)
            except BlockingIOError:
                return True
            except OSError:
                return False
            if not data:
                return False
            if fd == self.out:
                room = self.cap - len(self.stdout)
                if room > 0:
                    self.stdout += data[:room]
                self.stdout_total += len(data)
            else:
                self.stderr += data
                self.stderr_total += len(data)
                if len(self.stderr) > self.cap:
                    del self.stderr[: len(self.stderr) - self.cap]
        return True

    def drain(self) -> None:
        for fd in (self.out, self.err):
            if fd >= 0:
                self.read(fd)

    def setup_error(self) -> str:
        return self.stderr.decode("utf-8", "replace").strip() or f"exit status {self.exit_code}"

    def outcome(self) -> dict[str, Any]:
        """The call's outcome (JSON for ``RunOutcome``)."""
        outcome: dict[str, Any] = {
            "stdout": self.stdout.decode("utf-8", "replace"),
            "stdout_bytes": self.stdout_total,
            "stdout_truncated": self.stdout_total > len(self.stdout),
            "stderr": self.stderr.decode("utf-8", "replace"),
            "stderr_truncated": self.stderr_total > len(self.stderr),
            "timed_out": self.timed_out,
            "timeout_s": self.timeout_s,
            "duration_s": time.monotonic() - self.started,
            "exit_code": self.reported_exit,
        }
        if self.reported_exit is None and self.exit_code is not None and not self.timed_out:
            if self.exit_code < 0:
                outcome.update(signal=-self.exit_code, cpu_s=self.cpu_s, oom_killed=self.oom_killed)
            elif self.exit_code == SETUP_FAILED:
                outcome["setup_error"] = self.setup_error()
            else:
                outcome["exit_code"] = self.exit_code
        return outcome
