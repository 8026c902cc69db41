"""The one exception the checkpoint package raises, and the warning it gives when RNG state cannot be restored."""

from __future__ import annotations

__all__ = ["CheckpointError", "RngStateWarning"]


class CheckpointError(RuntimeError):
    """A checkpoint cannot be saved, found, verified or loaded; the message is one sentence that says what to do."""


class RngStateWarning(UserWarning):
    """The resumed run will not replay the saved random numbers exactly (e.g. a different number of ranks)."""
