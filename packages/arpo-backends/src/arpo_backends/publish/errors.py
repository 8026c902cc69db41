"""The one error every publisher raises when weights did not reach the inference servers."""

from __future__ import annotations

__all__ = ["PublishError"]


class PublishError(RuntimeError):
    """Publishing failed; the message is one sentence naming the server, the route and what to do.

    Raised for unreachable servers, routes that answer an error, timeouts, a hung NCCL broadcast and a weight
    source that yields nothing. Bad arguments (an unknown target kind, a missing directory) raise ``ValueError``
    and a source of the wrong kind raises ``TypeError`` instead, before anything is sent.
    """
