"""The ``fsdp`` backend: PyTorch FSDP2 (``fully_shard``), fp32 on CPU, bf16 mixed precision on GPU.

Each decoder layer is one FSDP unit and the root holds the rest (embeddings, final norm, a tied LM head).
Gradients are reduce-scattered with an *average* over ranks, which the loss's ``data_parallel_size`` factor turns
into the exact sum (``loss.aggregation``). The optimiser is torch's AdamW over the local shards, so a step equals a
single process's AdamW step on the full parameters (elementwise), which the invariance test checks.

Checkpoints use ``torch.distributed.checkpoint`` (each rank writes its shards; resumable on the same world size;
DCP can reshard on load). FSDP1 is not used: its full-state-dict gather with CPU offload segfaults with torch 2.13
on gloo (facts.md).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.distributed.tensor import DTensor

from arpo_backends.train.base import BaseTrainer
from arpo_backends.train.config import TrainerConfig
from arpo_backends.train.dist import DistContext
from arpo_backends.train.model import decoder_layers, load_policy
from arpo_backends.train.optim import make_optimizer, make_scheduler

__all__ = ["FSDPTrainer"]


class FSDPTrainer(BaseTrainer):
    backend_name = "fsdp"

    def __init__(self, config: TrainerConfig, ctx: DistContext | None = None) -> None:
        super().__init__(config, ctx)
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

        model = load_policy(config).to(self.ctx.device)
        mesh = init_device_mesh(self.ctx.device.type, (self.ctx.world_size,))
        mp = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
        kwargs: dict[str, Any] = {"mesh": mesh, "reshard_after_forward": config.fsdp.reshard_after_forward}
        if config.precision == "bf16":
            kwargs["mp_policy"] = mp
        for layer in decoder_layers(model):
            fully_shard(layer, **kwargs)
        fully_shard(model, **kwargs)
        self._model = model
        self.optimizer = make_optimizer([p for p in model.parameters() if p.requires_grad], config.optim)
        self.scheduler = make_scheduler(self.optimizer, config.optim)

    @property
    def policy(self) -> nn.Module:
        return self._model

    @property
    def forward_module(self) -> Any:
        return self._model

    @property
    def unwrapped(self) -> nn.Module:
        return self._model

    def backward(self, loss: torch.Tensor) -> None:
        loss.backward()  # type: ignore[no-untyped-call]

    def update(self) -> tuple[float, float]:
        params = [p for p in self._model.parameters() if p.requires_grad]
        max_norm = self.config.optim.grad_clip if self.config.optim.grad_clip is not None else float("inf")
        norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
        if isinstance(norm, DTensor):
            norm = norm.full_tensor()
        lr = float(self.optimizer.param_groups[0]["lr"])
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return float(norm), lr

    def raw_state(self) -> Iterator[tuple[str, torch.Tensor]]:
        for name, value in self._model.state_dict().items():
            full = value.full_tensor() if isinstance(value, DTensor) else value
            yield name, full.detach().to("cpu", copy=True)

    def save_shards(self, folder: Path) -> None:
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint.state_dict import get_state_dict

        model_state, optim_state = get_state_dict(self._model, self.optimizer)
        dcp.save({"model": model_state, "optim": optim_state}, checkpoint_id=str(folder / "fsdp"))  # type: ignore[attr-defined]
        if self.ctx.is_main:
            torch.save({"scheduler": self.scheduler.state_dict()}, folder / "scheduler.pt")

    def load_shards(self, folder: Path) -> None:
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

        model_state, optim_state = get_state_dict(self._model, self.optimizer)
        state: dict[str, Any] = {"model": model_state, "optim": optim_state}
        dcp.load(state, checkpoint_id=str(folder / "fsdp"))  # type: ignore[attr-defined]
        set_state_dict(self._model, self.optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"])
        sched = torch.load(folder / "scheduler.pt", weights_only=False)
        self.scheduler.load_state_dict(sched["scheduler"])
