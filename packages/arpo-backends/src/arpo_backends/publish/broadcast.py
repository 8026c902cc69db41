"""The data plane of the NCCL publisher: a ``WeightBroadcaster`` sends tensors from trainer rank 0 to vLLM.

The group is the one vLLM's weight-transfer engine (backend ``nccl``) joins: the trainer is rank 0 and the
inference workers are ranks ``rank_offset ..``; every worker receives each tensor by a broadcast from rank 0, in
the order ``/update_weights`` listed them (unpacked mode: one broadcast per tensor, in the declared dtype and
shape). ``init`` must run while the servers run ``/init_weight_transfer_engine``: both sides meet in the same
rendezvous. ``broadcast`` returns once the tensors have left (the CUDA stream is synchronised).

``NcclBroadcaster`` is the real one: vLLM's ``StatelessProcessGroup`` (a TCP store on ``master_address:port``
that only this group uses, independent of the trainer's own ``torch.distributed`` group) and its
``PyNcclCommunicator``, imported only when used; it needs a CUDA device and vLLM installed in the trainer's
environment (the same NCCL as the servers'). The recording fake for tests is ``testing.RecordingBroadcaster``.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import torch

__all__ = ["NEEDS_CUDA_AND_VLLM", "NcclBroadcaster", "WeightBroadcaster"]

NEEDS_CUDA_AND_VLLM = (
    "the NCCL weight broadcaster needs CUDA and vllm installed in the trainer's environment "
    "(torch.cuda.is_available() and `import vllm`); on a machine without them use the cpu_server or vllm_lora target."
)


@runtime_checkable
class WeightBroadcaster(Protocol):
    def init(self, master_address: str, master_port: int, world_size: int) -> None:
        """Join the group as rank 0 of ``world_size`` (blocks until every worker has joined)."""
        ...

    def broadcast(self, tensors: Sequence[torch.Tensor]) -> None:
        """Send each tensor, in order, to every worker; returns when they are sent."""
        ...

    def close(self) -> None:
        """Leave the group (also after a failure); the broadcaster is not used again."""
        ...


class NcclBroadcaster:
    """Rank 0 of vLLM's NCCL weight-transfer group, on CUDA device ``device`` (default: the current one)."""

    def __init__(self, device: int | None = None) -> None:
        import torch

        if not torch.cuda.is_available() or importlib.util.find_spec("vllm") is None:
            raise RuntimeError(NEEDS_CUDA_AND_VLLM)
        self.device = torch.device("cuda", torch.cuda.current_device() if device is None else device)
        self._comm: Any = None

    def init(self, master_address: str, master_port: int, world_size: int) -> None:
        try:  # imported by name: vLLM is optional and has no type stubs
            pynccl = importlib.import_module("vllm.distributed.device_communicators.pynccl")
            utils = importlib.import_module("vllm.distributed.utils")
        except ImportError as err:
            raise RuntimeError(f"{NEEDS_CUDA_AND_VLLM} ({err})") from err
        group = utils.StatelessProcessGroup.create(host=master_address, port=master_port, rank=0, world_size=world_size)
        self._comm = pynccl.PyNcclCommunicator(group, device=self.device)

    def broadcast(self, tensors: Sequence[torch.Tensor]) -> None:
        import torch

        if self._comm is None:
            raise RuntimeError("NcclBroadcaster.broadcast was called before init.")
        stream = torch.cuda.current_stream(self.device)
        for tensor in tensors:
            on_device = tensor.to(self.device).contiguous()
            self._comm.broadcast(on_device, src=0, stream=stream)
        stream.synchronize()

    def close(self) -> None:
        self._comm = None
