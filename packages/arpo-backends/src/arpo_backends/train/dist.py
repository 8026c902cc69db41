"""The process group every trainer runs in: torchrun / the ``deepspeed`` launcher, or one plain process.

Under a launcher the usual variables are set (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``,
``MASTER_PORT``). A plain ``python`` process gets a world of one on 127.0.0.1 and a free port, so FSDP2 and
DeepSpeed (which looks for ``mpi4py`` without them) run unchanged. gloo on CPU, NCCL on CUDA.

``finish()`` ends a rank the way facts.md measured to be reliable with torch 2.13 on gloo: a final barrier, the
process group destroyed, streams flushed, then ``os._exit`` — about one run in ten otherwise aborts at interpreter
exit ("terminate called without an active exception") after finishing correctly.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, NoReturn

import torch
import torch.distributed as dist

__all__ = ["DistContext", "finish", "free_port", "init_distributed", "name_cpu_accelerator"]


def name_cpu_accelerator() -> None:
    """On a machine where torch sees no GPU, tell DeepSpeed (imported by transformers whenever it is installed) that
    the accelerator is the CPU: it picks the CPU anyway, but otherwise warns on every run that it "was unable to
    detect" a GPU. Leaves a ``DS_ACCELERATOR`` already set alone; launched ranks inherit it."""
    if "DS_ACCELERATOR" not in os.environ and not torch.cuda.is_available():
        os.environ["DS_ACCELERATOR"] = "cpu"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class DistContext:
    """This rank's place in the data-parallel world."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if dist.is_initialized():
            dist.barrier()

    def all_reduce_sum(self, values: Mapping[str, float]) -> dict[str, float]:
        """Every rank's ``values`` summed key by key (all ranks must pass the same keys in any order)."""
        names = sorted(values)
        if not dist.is_initialized() or self.world_size == 1:
            return {n: float(values[n]) for n in names}
        tensor = torch.tensor([float(values[n]) for n in names], dtype=torch.float64, device=self._comm_device)
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return {n: float(v) for n, v in zip(names, tensor.tolist(), strict=True)}

    def all_reduce_max(self, value: int) -> int:
        if not dist.is_initialized() or self.world_size == 1:
            return value
        tensor = torch.tensor([value], dtype=torch.int64, device=self._comm_device)
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
        return int(tensor.item())

    def broadcast_object(self, obj: Any, src: int = 0) -> Any:
        """``obj`` of rank ``src`` on every rank (pickled; for batches, configs and paths, not tensors)."""
        if not dist.is_initialized() or self.world_size == 1:
            return obj
        box = [obj if self.rank == src else None]
        dist.broadcast_object_list(box, src=src, device=self._comm_device)
        return box[0]

    @property
    def _comm_device(self) -> torch.device:
        return self.device if dist.get_backend() == "nccl" else torch.device("cpu")


def init_distributed(timeout_s: float = 1800.0) -> DistContext:
    """Join (or create) the default process group; idempotent."""
    if "WORLD_SIZE" not in os.environ:
        os.environ.update({"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "LOCAL_WORLD_SIZE": "1"})
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", str(free_port()))
    rank, world = int(os.environ.get("RANK", "0")), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
    if not dist.is_initialized():
        for name in ("MASTER_ADDR", "MASTER_PORT"):
            if name not in os.environ:
                raise RuntimeError(
                    f"WORLD_SIZE={world} is set but {name} is not; start the ranks with torchrun or the deepspeed "
                    "launcher (they set it), or set it yourself."
                )
        dist.init_process_group(
            backend="nccl" if device.type == "cuda" else "gloo",
            rank=rank,
            world_size=world,
            timeout=timedelta(seconds=timeout_s),
        )
    return DistContext(rank=rank, world_size=world, local_rank=local_rank, device=device)


def finish(code: int = 0) -> NoReturn:
    """End this rank: barrier, destroy the group, flush, ``os._exit(code)`` (see the module docstring)."""
    if dist.is_initialized():
        if code == 0:
            dist.barrier()
        dist.destroy_process_group()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
