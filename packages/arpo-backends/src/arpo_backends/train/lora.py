r"""From a trainer's state-dict entries to Hugging Face names and full weights, LoRA adapters merged in.

Wrappers prefix names (``module.`` from DeepSpeed, ``_orig_mod.`` from ``torch.compile``, ``_fsdp_wrapped_module.``
and ``_checkpoint_wrapped_module.`` from older FSDP and activation checkpointing, ``base_model.model.`` from peft);
the inference server wants the plain Hugging Face names. A peft LoRA layer stores ``X.base_layer.weight`` W,
``X.lora_A.default.weight`` A (r × in) and ``X.lora_B.default.weight`` B (out × r); the served weight is::

    X.weight = W + (alpha / r) · B @ A

computed here as entries stream by (each module's three tensors are held only until the last of them arrives), so
the merged model is never materialised twice. ``peft``'s own ``merge_and_unload`` gives the same numbers; a test
checks the two against each other.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch

__all__ = ["hf_name", "hf_state_items"]

_WRAPPER_PREFIXES = ("module.", "_orig_mod.", "_fsdp_wrapped_module.", "_checkpoint_wrapped_module.")
_PEFT_PREFIX = "base_model.model."
_ADAPTER = "default"


def hf_name(name: str) -> str:
    """``name`` without the wrapper and peft prefixes, wherever they occur in the dotted path."""
    parts = name.split(".")
    kept = [p for p in parts if p + "." not in _WRAPPER_PREFIXES]
    name = ".".join(kept)
    if name.startswith(_PEFT_PREFIX):
        name = name[len(_PEFT_PREFIX) :]
    return name


def hf_state_items(
    items: Iterable[tuple[str, torch.Tensor]], *, lora_scaling: float | None = None
) -> Iterator[tuple[str, torch.Tensor]]:
    """``(hf_name, tensor)`` of ``items`` with LoRA merged (``lora_scaling`` = alpha / r; ``None``: no LoRA)."""
    pending: dict[str, dict[str, torch.Tensor]] = {}
    for raw, tensor in items:
        name = hf_name(raw)
        module, kind = _lora_part(name)
        if kind is None:
            yield name, tensor
            continue
        if lora_scaling is None:
            raise ValueError(
                f"{raw} is a LoRA tensor but the trainer has no LoRA config; pass lora_scaling=alpha/rank to merge it."
            )
        parts = pending.setdefault(module, {})
        parts[kind] = tensor
        if kind == "bias":
            yield f"{module}.bias", tensor
            del parts[kind]
        if {"weight", "A", "B"} <= parts.keys():
            merged = parts["weight"] + lora_scaling * (
                parts["B"].to(parts["weight"].dtype) @ parts["A"].to(parts["weight"].dtype)
            )
            yield f"{module}.weight", merged
            del pending[module]
    left = {m: sorted(p) for m, p in pending.items() if p}
    if left:
        raise ValueError(f"LoRA layers with missing parts (module: parts seen): {left}; the state dict is incomplete.")


def _lora_part(name: str) -> tuple[str, str | None]:
    """(module path, "weight" | "bias" | "A" | "B") for a LoRA layer's tensor; (name, None) for any other."""
    for marker, kind in (
        (".base_layer.weight", "weight"),
        (".base_layer.bias", "bias"),
        (f".lora_A.{_ADAPTER}.weight", "A"),
        (f".lora_B.{_ADAPTER}.weight", "B"),
    ):
        if name.endswith(marker):
            return name[: -len(marker)], kind
    return name, None
