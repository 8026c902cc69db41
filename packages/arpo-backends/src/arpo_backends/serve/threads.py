"""How many CPU threads each engine step uses, on a machine the server shares (with the trainer, tool servers, …).

Measured on a 2-core machine (SmolLM2-135M, 16 chat prompts, greedy): with torch's defaults (one thread per core,
OpenMP threads that spin up to 300,000 times, ~15 ms, at every barrier) an engine step is 5–8× slower as soon as
other processes keep the cores busy — each of the ~1,000 parallel regions of a forward waits for a descheduled
partner thread, spinning. So:

* ``configure_openmp`` (``arpo serve`` calls it before torch is imported) bounds the spin: OpenMP threads wait
  actively for at most ~100 µs, then sleep (``GOMP_SPINCOUNT``; ``KMP_BLOCKTIME`` for Intel's runtime), unless the
  environment says otherwise (``OMP_WAIT_POLICY``, ``GOMP_SPINCOUNT``, ``KMP_BLOCKTIME``). Results do not change.
* ``AutoThreads`` (``--threads auto``) picks the threads of each step from the cores that other runnable threads
  leave free (``procs_running`` of ``/proc/stat``, smoothed over steps): every core on an idle machine (a step
  was ~1.4× faster with 2 threads than with 1), one on a busy machine (~1.2× faster than 2 there). Opt-in: BLAS
  splits its products by threads, so the thread count changes the last bits of a forward, and with them about
  0.2 % of the tokens sampled at temperature 1 — seeded samples would depend on the machine's load.
"""

from __future__ import annotations

import os

__all__ = ["AutoThreads", "FixedThreads", "available_cores", "configure_openmp"]

_SPIN = "2000"  # busy-wait iterations before sleeping (each one ``pause``: 2000 ≈ 10–100 µs)


def configure_openmp() -> None:
    """Bound OpenMP's busy-waiting unless the environment sets it; effective only before torch is imported."""
    if not any(name in os.environ for name in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")):
        os.environ["GOMP_SPINCOUNT"] = _SPIN
        os.environ["KMP_BLOCKTIME"] = "0"


def available_cores() -> int:
    """The cores this process may run on."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except (AttributeError, OSError):
        return max(os.cpu_count() or 1, 1)


class FixedThreads:
    """Always ``threads`` (set in the engine's own thread: torch's setting is per thread)."""

    def __init__(self, threads: int) -> None:
        self.threads = threads

    def __call__(self) -> int:
        return self.threads


class AutoThreads:
    """The cores not taken by other runnable threads, between 1 and ``cores``; called once per engine step."""

    def __init__(self, cores: int | None = None, *, smoothing: float = 0.25, stat: str = "/proc/stat") -> None:
        self.cores = cores or available_cores()
        self.smoothing = smoothing
        self.stat = stat
        self.others = 0.0  # smoothed count of other runnable threads
        self._readable = self.cores > 1

    def __call__(self) -> int:
        if not self._readable:
            return self.cores
        running = self._procs_running()
        if running is None:
            self._readable = False
            return self.cores
        others = max(running - 1, 0)  # the caller is running
        self.others += self.smoothing * (others - self.others)
        return max(1, self.cores - int(self.others + 0.5))

    def _procs_running(self) -> int | None:
        try:
            with open(self.stat, "rb") as f:
                for line in f:
                    if line.startswith(b"procs_running "):
                        return int(line.split()[1])
        except (OSError, ValueError):
            return None
        return None
