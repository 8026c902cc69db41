"""Daemon threads that report through a ``Future``: for calls that may hang and must not block interpreter exit.

``concurrent.futures.ThreadPoolExecutor`` joins its workers at interpreter exit, so one NCCL broadcast that never
returns would keep the trainer from exiting after its error was reported. ``spawn`` runs a callable in a daemon
thread instead; ``wait_all`` waits for several such futures with one deadline and returns early on the first
failure.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, wait
from typing import Any, TypeVar

__all__ = ["spawn", "wait_all"]

T = TypeVar("T")


def spawn(fn: Callable[[], T], name: str) -> Future[T]:
    """Run ``fn()`` in a new daemon thread; its result or exception lands in the returned future."""
    future: Future[T] = Future()

    def run() -> None:
        if not future.set_running_or_notify_cancel():
            return
        try:
            result = fn()
        except BaseException as err:  # the caller re-raises it from the future
            future.set_exception(err)
        else:
            future.set_result(result)

    threading.Thread(target=run, name=name, daemon=True).start()
    return future


def wait_all(futures: Sequence[Future[Any]], timeout_s: float) -> list[Future[Any]]:
    """Wait until all are done, one fails, or ``timeout_s`` passes; returns the futures still pending.

    A failed future is not raised here: the caller looks at the finished ones to pick the most telling error.
    """
    _, pending = wait(futures, timeout=timeout_s, return_when=FIRST_EXCEPTION)
    return [f for f in futures if f in pending]
