"""Per-rank RNG state: python ``random``, numpy's global RNG, torch's CPU generator and every CUDA device's.

``capture_rng_state()`` returns a plain dict (tensors, lists, tuples, numbers) that ``torch.save`` writes and
``torch.load(weights_only=True)`` reads back; ``restore_rng_state`` puts it back, after which every RNG draws the
same numbers as it would have after the capture.

Each rank has its own streams (dropout masks, sampling noise), so the state is saved per rank:
``save_rng(folder, rank)`` writes ``rng-rank{rank}.pt`` and ``load_rng(folder, rank)`` reads it.

Resuming with a different number of ranks (e.g. a 2-rank checkpoint on 4 ranks) cannot be an exact continuation:
the data is sharded differently anyway. The behaviour follows Hugging Face's ``Trainer`` (which TRL and most verl
users know): warn and continue. Every rank warns (``RngStateWarning``); a rank whose file exists (here 0 and 1)
restores it, the others (2 and 3) keep the state the trainer seeded them with. Pass ``strict=True`` to make it a
``CheckpointError`` instead. A checkpoint with no RNG file at all is handled the same way.

torch is imported inside the functions, so importing ``arpo_backends.checkpoint`` stays cheap.
"""

from __future__ import annotations

import random
import re
import warnings
from pathlib import Path
from typing import Any, BinaryIO

from arpo_backends.checkpoint._fs import atomic_write
from arpo_backends.checkpoint.errors import CheckpointError, RngStateWarning

__all__ = ["capture_rng_state", "load_rng", "restore_rng_state", "rng_file", "save_rng"]

_RNG_FORMAT = 1
_RNG_FILE_RE = re.compile(r"rng-rank(\d+)\.pt")


def rng_file(folder: Path, rank: int) -> Path:
    """``folder/rng-rank{rank}.pt``."""
    return Path(folder) / f"rng-rank{rank}.pt"


def capture_rng_state() -> dict[str, Any]:
    """The state of python ``random``, numpy's global RNG (when numpy is installed), torch CPU, and all CUDA devices."""
    import torch

    state: dict[str, Any] = {"python": random.getstate(), "torch": torch.get_rng_state()}
    try:
        import numpy as np
    except ImportError:  # pragma: no cover - numpy is optional for torch
        pass
    else:
        kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)  # noqa: NPY002 (the global RNG is the point)
        # Plain python values, so torch.load(weights_only=True) accepts them (it refuses numpy arrays).
        state["numpy"] = {
            "kind": str(kind),
            "keys": [int(k) for k in keys],
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Put back a ``capture_rng_state()`` result (the parts present in it).

    CUDA state on a machine without CUDA, or for a different number of devices, is restored as far as it goes, with
    an ``RngStateWarning``.
    """
    import torch

    if not isinstance(state, dict) or "python" not in state or "torch" not in state:
        raise CheckpointError(
            "the RNG state is not a capture_rng_state() dict (it needs 'python' and 'torch'); save it with save_rng."
        )
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    torch.set_rng_state(state["torch"])
    if "numpy" in state:
        try:
            import numpy as np
        except ImportError:  # pragma: no cover
            warnings.warn("the RNG state holds numpy's but numpy is not installed; skipped", RngStateWarning, 2)
        else:
            saved = state["numpy"]
            np.random.set_state(  # noqa: NPY002 (the global RNG is the point)
                (
                    saved["kind"],
                    np.asarray(saved["keys"], dtype=np.uint32),
                    saved["pos"],
                    saved["has_gauss"],
                    saved["cached_gaussian"],
                )
            )
    if "cuda" in state:
        cuda_states = list(state["cuda"])
        if not torch.cuda.is_available():
            warnings.warn(
                f"the RNG state holds {len(cuda_states)} CUDA device(s)' state but CUDA is not available here; "
                "the CUDA RNG is not restored.",
                RngStateWarning,
                stacklevel=2,
            )
        else:
            count = torch.cuda.device_count()
            if count != len(cuda_states):
                warnings.warn(
                    f"the RNG state holds {len(cuda_states)} CUDA device(s)' state and this process sees {count}; "
                    f"restoring the first {min(count, len(cuda_states))}.",
                    RngStateWarning,
                    stacklevel=2,
                )
            for device, device_state in enumerate(cuda_states[:count]):
                torch.cuda.set_rng_state(device_state, device)


def _current_world_size(world_size: int | None) -> int:
    if world_size is not None:
        return world_size
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1


def save_rng(folder: Path, rank: int, *, world_size: int | None = None) -> Path:
    """Write this rank's RNG state to ``folder/rng-rank{rank}.pt`` atomically; returns the file.

    ``world_size`` defaults to ``torch.distributed``'s (1 when not initialized); it is stored to detect a resume
    with another number of ranks.
    """
    import torch

    payload = {
        "format": _RNG_FORMAT,
        "rank": rank,
        "world_size": _current_world_size(world_size),
        "state": capture_rng_state(),
    }
    path = rng_file(folder, rank)

    def write(handle: BinaryIO) -> None:
        torch.save(payload, handle)

    atomic_write(path, write)
    return path


def _read(path: Path) -> dict[str, Any]:
    import torch

    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(
            f"cannot read the RNG state {path} ({type(exc).__name__}: {exc}); the checkpoint is damaged: resume from "
            "an earlier checkpoint."
        ) from exc
    if not isinstance(payload, dict) or "state" not in payload:
        raise CheckpointError(f"{path} is not an RNG state written by save_rng; resume from an earlier checkpoint.")
    return payload


def load_rng(folder: Path, rank: int, *, world_size: int | None = None, strict: bool = False) -> bool:
    """Restore this rank's RNG state from ``folder``; returns whether it was restored.

    When the checkpoint was saved by a different number of ranks (or holds no RNG state), warn with
    ``RngStateWarning`` and continue: a rank with a saved file restores it, any other keeps its current state (see
    the module docstring). With ``strict=True`` that case raises ``CheckpointError`` instead.
    """
    folder = Path(folder)
    current = _current_world_size(world_size)
    saved_ranks = sorted(
        int(m.group(1)) for p in folder.glob("rng-rank*.pt") if (m := _RNG_FILE_RE.fullmatch(p.name)) is not None
    )
    own = rng_file(folder, rank)
    payload = _read(own) if own.exists() else None
    if payload is not None:
        saved = int(payload.get("world_size", len(saved_ranks)))
    elif saved_ranks:
        saved = int(_read(rng_file(folder, saved_ranks[0])).get("world_size", len(saved_ranks)))
    else:
        saved = 0
    if saved != current or payload is None:
        if saved == 0:
            problem = f"{folder} holds no RNG state (no rng-rank*.pt file)"
        else:
            problem = (
                f"RNG state is saved per rank and {folder} holds the states of {saved} rank(s) while this run has "
                f"{current}"
            )
        consequence = (
            f"rank {rank} restores rank {rank}'s saved state"
            if payload is not None
            else f"rank {rank} has no saved state and keeps its current (freshly seeded) one"
        )
        message = (
            f"{problem}, so the resumed run will not replay the same random numbers: {consequence} (pass strict=True "
            "to make this an error)."
        )
        if strict:
            raise CheckpointError(message.replace(" (pass strict=True to make this an error)", ""))
        warnings.warn(message, RngStateWarning, stacklevel=2)
    if payload is None:
        return False
    restore_rng_state(payload["state"])
    return True
