"""The ``none`` target: publishing does nothing (training without inference servers, or evaluation only).

It does not iterate the source: a trainer whose buckets are built by collectives should not build a source at
all for this target (``needs_weights(target)`` is false), since the other ranks would wait in a gather that rank 0
never joins.
"""

from __future__ import annotations

from arpo_backends.publish.base import Publisher
from arpo_backends.publish.source import AdapterSource, WeightSource

__all__ = ["NullPublisher"]


class NullPublisher(Publisher):
    kind = "none"

    def publish(self, weights: WeightSource | AdapterSource, version: int) -> list[str]:
        self._check_version(version)
        self.last_version = version
        return []
