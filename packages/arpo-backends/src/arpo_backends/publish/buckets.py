"""Grouping a model's ``(name, tensor)`` pairs into buckets of bounded bytes, and Hugging Face parameter names.

A trainer publishes weights bucket by bucket so that rank 0 never holds two copies of the model: under ZeRO-3 or
FSDP it gathers the parameters of one bucket, hands the bucket over, and frees it before gathering the next.
``iter_buckets`` does the grouping lazily, so it can wrap a generator that gathers parameter by parameter; it only
reads ``numel()`` and ``element_size()``, so it also plans buckets over meta tensors before anything is gathered.

Rule: pairs keep their order; a pair joins the current bucket while the bucket's bytes stay at most
``bucket_bytes``; a tensor larger than ``bucket_bytes`` gets a bucket of its own (it is never split).

``hf_name`` undoes the renaming that wrappers apply to parameter names, so the names match a Hugging Face
checkpoint (what the CPU server and vLLM's ``load_weights`` expect): a leading ``module.`` (DDP, DeepSpeed) and
the components ``_orig_mod`` (``torch.compile``), ``_fsdp_wrapped_module`` (FSDP1) and
``_checkpoint_wrapped_module`` (activation checkpointing) wherever they occur. peft's ``base_model.model.``
prefix and ``.base_layer`` are not undone here: merging or saving a LoRA model is the trainer's job.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

__all__ = ["DEFAULT_BUCKET_BYTES", "hf_name", "iter_buckets", "prepare_bucket", "tensor_nbytes"]

DEFAULT_BUCKET_BYTES = 512 * 2**20
"""512 MiB: few enough round trips for a 7B model (≈ 30 buckets in bf16), small beside a GPU's memory."""

_WRAPPER_COMPONENTS = frozenset({"_orig_mod", "_fsdp_wrapped_module", "_checkpoint_wrapped_module"})
_LEADING_COMPONENTS = frozenset({"module", *_WRAPPER_COMPONENTS})


def hf_name(name: str) -> str:
    """The Hugging Face name of a wrapped parameter.

    ``module._orig_mod.model.layers.0._fsdp_wrapped_module.mlp.up_proj.weight`` → ``model.layers.0.mlp.up_proj.weight``
    """
    parts = name.split(".")
    while len(parts) > 1 and parts[0] in _LEADING_COMPONENTS:
        parts = parts[1:]
    kept = [part for part in parts[:-1] if part not in _WRAPPER_COMPONENTS]
    return ".".join([*kept, parts[-1]])


def tensor_nbytes(tensor: torch.Tensor) -> int:
    """Bytes of the tensor's elements (not of its storage, which a view may share with others)."""
    return int(tensor.numel()) * int(tensor.element_size())


def iter_buckets(
    named_tensors: Iterable[tuple[str, torch.Tensor]], bucket_bytes: int = DEFAULT_BUCKET_BYTES
) -> Iterator[list[tuple[str, torch.Tensor]]]:
    """Yield lists of pairs, in order, each at most ``bucket_bytes`` unless it holds one larger tensor alone."""
    if bucket_bytes < 1:
        raise ValueError(f"bucket_bytes={bucket_bytes} must be at least 1 byte.")
    bucket: list[tuple[str, torch.Tensor]] = []
    size = 0
    for name, tensor in named_tensors:
        nbytes = tensor_nbytes(tensor)
        if bucket and size + nbytes > bucket_bytes:
            yield bucket
            bucket, size = [], 0
        bucket.append((name, tensor))
        size += nbytes
    if bucket:
        yield bucket


def prepare_bucket(
    bucket: Sequence[tuple[str, torch.Tensor]], seen: set[str], *, to_cpu: bool = True
) -> list[tuple[str, torch.Tensor]]:
    """The bucket with Hugging Face names and detached, contiguous tensors; a name seen before is an error.

    ``to_cpu`` moves tensors to the CPU (for writing files); the NCCL publisher keeps them where they are, since
    its broadcaster copies them to its GPU anyway.

    ``seen`` collects the names of earlier buckets of the same publish: a name published twice would make a
    server load two different values for one parameter.
    """
    out: list[tuple[str, torch.Tensor]] = []
    for raw_name, tensor in bucket:
        name = hf_name(raw_name)
        if name in seen:
            raise ValueError(
                f"the weight source yields {name!r} twice (as {raw_name!r}); each parameter must appear once."
            )
        seen.add(name)
        tensor = tensor.detach()
        out.append((name, (tensor.cpu() if to_cpu else tensor).contiguous()))
    return out
