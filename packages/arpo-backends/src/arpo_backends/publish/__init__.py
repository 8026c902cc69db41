"""Publishing a trainer's new weights to the inference servers after each step.

A trainer, on rank 0 only::

    publisher = make_publisher(target)                  # once per run; target: arpo_core's WeightTarget
    ...
    lines = publisher.publish(weights, version=step)    # after each optimiser step; lines are for the log
    client_model = publisher.model_name or client_model # the LoRA target serves a new adapter name per version
    ...
    publisher.close()

``weights`` is a ``WeightSource`` for full weights (``cpu_server``, ``vllm_nccl``): buckets of
``(name, full tensor)`` pairs, e.g. ``iter_buckets(model.state_dict().items(), bucket_bytes)`` or a generator
that gathers one ZeRO-3/FSDP parameter at a time; or an ``AdapterSource`` for ``vllm_lora`` (``PeftAdapter``
wraps a peft model). ``source`` documents the contract, each publisher module its routes:

- ``cpu_server`` — ``cpu_server``: safetensors into ``directory/v{version:06d}``, ``POST /v1/load_weights``;
- ``vllm_lora`` — ``vllm_lora``: ``directory/lora-v{version:06d}``, ``POST /v1/load_lora_adapter`` then
  ``POST /v1/unload_lora_adapter`` of the previous adapter;
- ``vllm_nccl`` — ``vllm_nccl``: vLLM's weight-transfer routes with an NCCL broadcast (``broadcast``);
- ``none`` — nothing.
Failures raise ``PublishError`` with one sentence naming the server, the route and the fix.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from arpo_backends.publish.base import Publisher
from arpo_backends.publish.broadcast import NcclBroadcaster, WeightBroadcaster
from arpo_backends.publish.buckets import DEFAULT_BUCKET_BYTES, hf_name, iter_buckets, tensor_nbytes
from arpo_backends.publish.cpu_server import CpuServerPublisher
from arpo_backends.publish.errors import PublishError
from arpo_backends.publish.http import normalise_url
from arpo_backends.publish.null import NullPublisher
from arpo_backends.publish.source import AdapterSource, Bucket, PeftAdapter, WeightSource
from arpo_backends.publish.vllm_lora import VllmLoraPublisher
from arpo_backends.publish.vllm_nccl import VllmNcclPublisher

if TYPE_CHECKING:
    from arpo_core.runtime.trainer import WeightTarget

__all__ = [
    "DEFAULT_BUCKET_BYTES",
    "KINDS",
    "AdapterSource",
    "Bucket",
    "CpuServerPublisher",
    "NcclBroadcaster",
    "NullPublisher",
    "PeftAdapter",
    "PublishError",
    "Publisher",
    "VllmLoraPublisher",
    "VllmNcclPublisher",
    "WeightBroadcaster",
    "WeightSource",
    "hf_name",
    "iter_buckets",
    "make_publisher",
    "needs_weights",
    "tensor_nbytes",
]

KINDS = ("cpu_server", "vllm_lora", "vllm_nccl", "none")


def needs_weights(target: WeightTarget) -> bool:
    """Whether ``publish`` reads the weights: false for ``none``, so trainers skip gathering them at all."""
    return target.kind != "none"


def make_publisher(
    target: WeightTarget,
    *,
    timeout_s: float = 60.0,
    transfer_timeout_s: float = 600.0,
    keep_versions: int = 2,
    lora_name_prefix: str = "arpo",
    broadcaster: WeightBroadcaster | None = None,
    master_address: str | None = None,
    master_port: int | None = None,
    inference_world_sizes: Sequence[int] | None = None,
    pause_mode: str = "wait",
    reset_prefix_cache: bool = True,
) -> Publisher:
    """The publisher for ``target``; checks the target and fails with one sentence before anything is sent.

    ``timeout_s`` bounds each short HTTP call; ``transfer_timeout_s`` the long ones: a server loading a folder
    (it first lets its running batch finish), ``/pause`` in ``wait`` mode, the NCCL rendezvous, and each bucket's
    ``/update_weights`` with its broadcast. ``keep_versions`` folders stay on disk (``cpu_server``, ``vllm_lora``).
    ``lora_name_prefix``: adapters are served as ``<prefix>-v<version>``. The rest is for ``vllm_nccl``:
    ``broadcaster`` (default ``NcclBroadcaster()``, which needs CUDA and vLLM), the rendezvous address and port
    (default: this machine's address towards the first server, and a free port), the servers' worker counts
    (default: asked with ``GET /get_world_size``), the ``/pause`` mode and whether to reset the prefix cache.
    """
    if target.kind not in KINDS:
        raise ValueError(f"weight target kind {target.kind!r} is not one of {', '.join(KINDS)}.")
    if target.kind == "none":
        return NullPublisher()
    urls = [normalise_url(url) for url in target.urls]
    if not urls:
        raise ValueError(f"the {target.kind} weight target needs the inference servers' URLs (WeightTarget.urls).")
    if len(set(urls)) != len(urls):
        raise ValueError(f"the weight target lists a server twice ({urls}); list each server once.")
    if target.kind == "vllm_nccl":
        return VllmNcclPublisher(
            urls,
            broadcaster if broadcaster is not None else NcclBroadcaster(),
            timeout_s=timeout_s,
            transfer_timeout_s=transfer_timeout_s,
            master_address=master_address,
            master_port=master_port,
            inference_world_sizes=inference_world_sizes,
            pause_mode=pause_mode,
            reset_prefix_cache=reset_prefix_cache,
        )
    directory = _directory(target)
    if target.kind == "cpu_server":
        return CpuServerPublisher(
            urls, directory, timeout_s=timeout_s, transfer_timeout_s=transfer_timeout_s, keep_versions=keep_versions
        )
    return VllmLoraPublisher(
        urls,
        directory,
        timeout_s=timeout_s,
        transfer_timeout_s=transfer_timeout_s,
        keep_versions=keep_versions,
        name_prefix=lora_name_prefix,
    )


def _directory(target: WeightTarget) -> Path:
    if target.directory is None:
        raise ValueError(
            f"the {target.kind} weight target needs a directory (WeightTarget.directory) that the servers can read, "
            "for the versioned weight folders."
        )
    return Path(target.directory)
