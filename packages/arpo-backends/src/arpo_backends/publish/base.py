"""The ``Publisher`` interface a trainer drives on rank 0: ``publish(weights, version)`` after a step, ``close()``.

One publisher per run, made by ``make_publisher(target)``. ``publish`` returns one line per thing updated (for
logs) or raises ``PublishError``; versions must increase within a publisher. ``model_name`` is the model name the
rollout client must request from now on: the LoRA publisher serves each version under a new adapter name; the
others return ``None`` (keep the name the client already uses).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from types import TracebackType
from typing import TypeVar

from arpo_backends.publish.source import AdapterSource, WeightSource

__all__ = ["Publisher"]

_P = TypeVar("_P", bound="Publisher")


class Publisher(ABC):
    kind: str = ""

    def __init__(self) -> None:
        self.last_version: int | None = None

    @property
    def model_name(self) -> str | None:
        """The served model name to request after the last publish; ``None``: unchanged."""
        return None

    @abstractmethod
    def publish(self, weights: WeightSource | AdapterSource, version: int) -> list[str]:
        """Make ``weights`` the served policy, tagged ``version``; returns what was updated, for logs."""

    def close(self) -> None:
        """Release connections (and the NCCL group); the served weights stay as they are."""
        return None

    def _check_version(self, version: int) -> None:
        if isinstance(version, bool) or not isinstance(version, int) or version < 0:
            raise ValueError(f"version={version!r} must be a non-negative integer (the policy version).")
        if self.last_version is not None and version <= self.last_version:
            raise ValueError(
                f"version {version} is not newer than the last published version {self.last_version}; "
                "versions must increase."
            )

    def __enter__(self: _P) -> _P:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
