"""Full-weight reload from a folder of safetensors files, in place, checked before anything is copied.

The trainer publishes a policy by writing its state dict (``save_pretrained`` or ``safetensors.torch.save_file``)
and asking the server to load it. Every tensor is checked first — name known, shape equal, every parameter present
(a tied ``lm_head.weight`` may be absent; a ``module.`` / ``_orig_mod.`` prefix from DDP/FSDP or ``torch.compile``
is stripped) — so a bad folder leaves the served weights untouched. Then each parameter is ``copy_``-ed in place
(cast to the served dtype), so no second copy of the model is held.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

__all__ = ["WeightLoadError", "load_weights"]

_PREFIXES = ("module.", "_orig_mod.")


class WeightLoadError(ValueError):
    """The folder cannot replace the served weights; the message says why."""


def _strip(name: str) -> str:
    changed = True
    while changed:
        changed = False
        for prefix in _PREFIXES:
            if name.startswith(prefix):
                name, changed = name[len(prefix) :], True
    return name


def _read(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    if not folder.is_dir():
        raise WeightLoadError(f"{folder} is not a folder; pass the folder the trainer wrote its safetensors into.")
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise WeightLoadError(f"{folder} holds no *.safetensors file; save the weights with save_pretrained first.")
    state: dict[str, torch.Tensor] = {}
    for file in files:
        for name, tensor in load_file(str(file)).items():
            state[_strip(name)] = tensor
    return state


def load_weights(model: Any, path: str | Path) -> int:
    """Copy the folder's tensors into ``model`` in place; returns how many tensors were loaded."""
    state = _read(Path(path).expanduser())
    params: dict[str, torch.Tensor] = dict(model.state_dict())
    unknown = sorted(set(state) - set(params))
    if unknown:
        raise WeightLoadError(
            f"{path} has {len(unknown)} tensor(s) the served model does not have, e.g. {unknown[:3]}; "
            "was it saved from another architecture?"
        )
    bad_shapes = [
        f"{n}: {tuple(t.shape)} vs {tuple(params[n].shape)}" for n, t in state.items() if t.shape != params[n].shape
    ]
    if bad_shapes:
        raise WeightLoadError(f"{path} has tensors of the wrong shape (file vs served): {bad_shapes[:3]}.")
    missing = sorted(names[0] for names in _alias_groups(params) if not any(n in state for n in names))
    if missing:
        raise WeightLoadError(
            f"{path} lacks {len(missing)} parameter(s) of the served model, e.g. {missing[:3]}; "
            "publish the full state dict."
        )
    with torch.no_grad():
        for name, tensor in state.items():
            params[name].copy_(tensor)
    return len(state)


def _alias_groups(params: dict[str, torch.Tensor]) -> list[list[str]]:
    """State-dict names grouped by the storage they share (a tied ``lm_head.weight`` joins the embeddings)."""
    groups: dict[int, list[str]] = {}
    for name, tensor in params.items():
        groups.setdefault(tensor.data_ptr(), []).append(name)
    return list(groups.values())
