"""What a trainer hands to ``Publisher.publish``: full weights in buckets, or a LoRA adapter that saves itself.

Full weights (``cpu_server``, ``vllm_nccl``): a ``WeightSource`` is any iterable of buckets, each a sequence of
``(name, tensor)`` pairs over full, unsharded tensors (on the CPU; the NCCL publisher also takes GPU tensors).
A list of lists works, and so does ``iter_buckets(...)`` over a generator that gathers one parameter at a time.
The publisher iterates it once, in order, bucket after bucket, and lets go of each bucket before asking for the
next, so a trainer whose buckets are built by collectives (ZeRO-3, FSDP) keeps every rank in step by iterating
the same buckets on ranks other than 0 and discarding them. On success the source is consumed to its end; after
a failure the publisher still drains it (best effort), so ranks iterating in lockstep do not hang in a gather.
Names are Hugging Face checkpoint names; publishers pass every name through ``hf_name`` (idempotent), so a
leading ``module.`` or a ``_orig_mod.`` component is harmless.

LoRA (``vllm_lora``): an ``AdapterSource`` writes the adapter (peft's ``save_pretrained`` output:
``adapter_config.json`` and ``adapter_model.safetensors``) into a folder the publisher picks; the publisher
then makes that folder the version's folder atomically. ``PeftAdapter(model)`` wraps a peft model. Under ZeRO-3 or
FSDP the trainer gathers the adapter weights before calling ``publish`` (peft's ``save_pretrained`` on rank 0 of
a gathered state); the adapter is small, so no buckets.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import torch

__all__ = [
    "AdapterSource",
    "Bucket",
    "PeftAdapter",
    "WeightSource",
    "drain",
    "require_adapter",
    "require_weights",
]

Bucket = Sequence[tuple[str, "torch.Tensor"]]
"""One bucket: ``(name, full tensor)`` pairs, in the order they are sent."""


@runtime_checkable
class WeightSource(Protocol):
    """Iterable of buckets over the full model (see the module docstring for the contract)."""

    def __iter__(self) -> Iterator[Bucket]: ...


@runtime_checkable
class AdapterSource(Protocol):
    """A LoRA adapter that can write itself in peft's format."""

    def save_adapter(self, folder: Path) -> None:
        """Write ``adapter_config.json`` and the adapter weights into ``folder`` (it exists and is empty)."""
        ...


class PeftAdapter:
    """``AdapterSource`` over a peft model: ``save_adapter(folder)`` is ``model.save_pretrained(folder)``."""

    def __init__(self, model: Any, **save_kwargs: Any) -> None:
        self.model = model
        self.save_kwargs = save_kwargs

    def save_adapter(self, folder: Path) -> None:
        self.model.save_pretrained(str(folder), **self.save_kwargs)


def require_weights(weights: object, kind: str) -> WeightSource:
    """``weights`` as a ``WeightSource``, or a ``TypeError`` saying what ``kind`` needs."""
    if isinstance(weights, AdapterSource) or not isinstance(weights, WeightSource):
        raise TypeError(
            f"the {kind} publisher sends full weights, not {type(weights).__name__}: pass buckets of "
            "(name, tensor) pairs, e.g. iter_buckets(model.state_dict().items()) (merge a LoRA adapter first)."
        )
    return weights


def require_adapter(weights: object, kind: str) -> AdapterSource:
    """``weights`` as an ``AdapterSource``, or a ``TypeError`` saying what ``kind`` needs."""
    if not isinstance(weights, AdapterSource):
        raise TypeError(
            f"the {kind} publisher loads a LoRA adapter, not {type(weights).__name__}: pass an object with "
            "save_adapter(folder), e.g. PeftAdapter(peft_model)."
        )
    return weights


def drain(buckets: Iterator[Bucket]) -> None:
    """Consume what is left of a source after a failure, so ranks gathering in lockstep are not left waiting.

    Errors while draining are swallowed: the error that stopped the publish is the one to report.
    """
    try:
        for _ in buckets:
            pass
    except Exception:
        pass
