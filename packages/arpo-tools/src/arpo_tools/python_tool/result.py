"""What one call gave (``RunOutcome``, as the zygote reports it) and the text the model reads (``format_result``).

The text is stdout first, then, when there is any, the last lines of stderr (a traceback's end), then one
bracketed line per event: ``[output truncated after N bytes; M bytes were printed]``, ``[timed out after N s;
the process was killed]``, ``[killed by signal SIGKILL: CPU time limit of N s exceeded]``, ``[exit status N]``,
``[sandbox error: …]``, ``[note: …]``. A run with nothing to show reads ``(no output)``.
"""

from __future__ import annotations

import signal
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["RunOutcome", "format_result"]


@dataclass(frozen=True, slots=True)
class RunOutcome:
    """One call's result, before formatting."""

    stdout: str = ""
    stdout_bytes: int = 0
    stdout_truncated: bool = False
    stderr: str = ""
    stderr_truncated: bool = False
    exit_code: int | None = None
    signal: int | None = None
    timed_out: bool = False
    timeout_s: float = 0.0
    duration_s: float = 0.0
    cpu_s: float = 0.0
    oom_killed: bool = False
    setup_error: str | None = None
    notes: tuple[str, ...] = field(default=())

    @classmethod
    def from_json(cls, raw: Mapping[str, Any], notes: tuple[str, ...] = ()) -> RunOutcome:
        known = {name for name in cls.__dataclass_fields__ if name != "notes"}
        return cls(**{k: v for k, v in raw.items() if k in known and v is not None}, notes=notes)

    @classmethod
    def error(cls, message: str, notes: tuple[str, ...] = ()) -> RunOutcome:
        return cls(setup_error=message, notes=notes)

    @property
    def failed(self) -> bool:
        """Whether the MCP result is marked ``is_error``: anything but a clean exit 0."""
        return bool(self.timed_out or self.signal or self.setup_error or self.exit_code != 0)

    def meta(self) -> dict[str, Any]:
        """Numbers for logs and metrics (exit status, truncation, timings)."""
        return {
            "exit_code": self.exit_code,
            "signal": self.signal,
            "timed_out": self.timed_out,
            "stdout_bytes": self.stdout_bytes,
            "duration_s": round(self.duration_s, 6),
        }


def _signal_text(outcome: RunOutcome, cpu_limit: float, memory_mb: int, scratch_mb: int) -> str:
    number = outcome.signal or 0
    try:
        name = signal.Signals(number).name
    except ValueError:
        name = f"signal {number}"
    why = ""
    if number in (signal.SIGXCPU, signal.SIGKILL) and outcome.cpu_s >= cpu_limit - 0.5:
        why = f": CPU time limit of {cpu_limit:g} s exceeded"
    elif number == signal.SIGKILL and outcome.oom_killed:
        why = f": memory limit of {memory_mb} MB exceeded"
    elif number == signal.SIGSEGV:
        why = ": the interpreter crashed (very deep recursion overflows the C stack)"
    elif number == signal.SIGXFSZ:
        why = f": file size limit of {scratch_mb} MB exceeded"
    return f"[killed by signal {name}{why}]"


def format_result(
    outcome: RunOutcome,
    *,
    max_output_bytes: int,
    stderr_tail_lines: int,
    cpu_limit: float = 0.0,
    memory_mb: int = 0,
    scratch_mb: int = 0,
) -> str:
    """The tool result's text (see the module docstring for its shape)."""
    parts: list[str] = []
    stdout = outcome.stdout
    if stdout:
        parts.append(stdout[:-1] if stdout.endswith("\n") else stdout)
    if outcome.stdout_truncated:
        parts.append(f"[output truncated after {max_output_bytes} bytes; {outcome.stdout_bytes} bytes were printed]")
    if outcome.stderr.strip() and not outcome.setup_error:
        lines = outcome.stderr.rstrip("\n").splitlines()
        cut = len(lines) > stderr_tail_lines or outcome.stderr_truncated
        tail = lines[-stderr_tail_lines:]
        parts.append("[stderr" + (", last lines" if cut else "") + "]\n" + "\n".join(tail))
    if outcome.setup_error:
        parts.append(f"[sandbox error: {outcome.setup_error}]")
    elif outcome.timed_out:
        parts.append(f"[timed out after {outcome.timeout_s:g} s; the process was killed]")
    elif outcome.signal:
        parts.append(_signal_text(outcome, cpu_limit, memory_mb, scratch_mb))
    elif outcome.exit_code not in (0, None):
        parts.append(f"[exit status {outcome.exit_code}]")
    parts.extend(f"[note: {note}]" for note in outcome.notes)
    return "\n".join(parts) if parts else "(no output)"
