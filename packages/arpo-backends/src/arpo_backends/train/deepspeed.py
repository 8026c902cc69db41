"""The ``deepspeed`` backend: ZeRO stages 0–3 from arpo's DeepSpeed config or the user's file.

arpo schedules micro-batches itself (a variable number per update, under a token budget), so the engine runs with
``managed_gradient_accumulation: false``: ``backward`` only accumulates, ``step`` is the update. Batch-size keys are
nominal. The loss is already normalised over the whole mini-batch and multiplied by the world size (DeepSpeed
averages gradients over ranks), so ``backward(..., scale_wrt_gas=False)``.

The optimiser is torch's AdamW (the same as ``fsdp``'s, so both backends give the same updates), or DeepSpeed's CPU
Adam with optimizer offload. The first run of DeepSpeed on a CPU builds its CPU ops into ``TORCH_EXTENSIONS_DIR``
(≈ 80 s); arpo points it at its cache folder unless set, so later runs reuse them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from arpo_backends.models.resolve import cache_dir
from arpo_backends.train.base import BaseTrainer
from arpo_backends.train.config import TrainerConfig
from arpo_backends.train.dist import DistContext
from arpo_backends.train.model import load_policy
from arpo_backends.train.optim import make_optimizer, make_scheduler

__all__ = ["DeepSpeedTrainer", "deepspeed_config"]

_CHECKPOINT_TAG = "deepspeed"


def deepspeed_config(config: TrainerConfig) -> dict[str, Any]:
    """The DeepSpeed config dict for ``config`` (the user's file, if given, with arpo's scheduling keys forced)."""
    options = config.deepspeed
    if options.config_file is not None:
        try:
            ds: dict[str, Any] = json.loads(Path(options.config_file).read_text())
        except (OSError, ValueError) as err:
            raise ValueError(
                f"deepspeed.config_file={options.config_file}: {err}; pass a readable DeepSpeed JSON config."
            ) from None
    else:
        zero: dict[str, Any] = {"stage": options.zero_stage, "overlap_comm": False, "contiguous_gradients": True}
        if options.offload_optimizer:
            zero["offload_optimizer"] = {"device": "cpu", "pin_memory": False}
        ds = {"zero_optimization": zero, "bf16": {"enabled": config.precision == "bf16"}}
        if options.offload_optimizer:
            o = config.optim
            ds["optimizer"] = {
                "type": "AdamW",
                "params": {"lr": o.lr, "betas": list(o.betas), "eps": o.eps, "weight_decay": o.weight_decay},
            }
    for key in ("train_batch_size", "gradient_accumulation_steps"):
        ds.pop(key, None)
    ds["train_micro_batch_size_per_gpu"] = 1
    ds["gradient_accumulation_steps"] = 1
    ds["managed_gradient_accumulation"] = False
    ds["gradient_clipping"] = config.optim.grad_clip or 0.0
    ds["zero_allow_untested_optimizer"] = True
    ds.setdefault("steps_per_print", 2**31 - 1)
    ds.setdefault("wall_clock_breakdown", False)
    return ds


class DeepSpeedTrainer(BaseTrainer):
    backend_name = "deepspeed"

    def __init__(self, config: TrainerConfig, ctx: DistContext | None = None) -> None:
        super().__init__(config, ctx)
        os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(cache_dir().parent / "torch_extensions"))
        try:
            import deepspeed
        except ImportError:
            raise ImportError(
                "the deepspeed backend needs DeepSpeed; install it with pip install 'arpo-backends[deepspeed]' "
                "or use --backend fsdp."
            ) from None
        model = load_policy(config)
        self.ds_config = deepspeed_config(config)
        trainable = [p for p in model.parameters() if p.requires_grad]
        optimizer = None if "optimizer" in self.ds_config else make_optimizer(trainable, config.optim)
        engine, _, _, _ = deepspeed.initialize(
            model=model,
            model_parameters=trainable,
            optimizer=optimizer,
            lr_scheduler=lambda opt: make_scheduler(opt, config.optim),
            config=self.ds_config,
            dist_init_required=False,
        )
        self.engine = engine
        self._stage = int(self.ds_config.get("zero_optimization", {}).get("stage", 0))

    @property
    def policy(self) -> nn.Module:
        return self.engine.module  # type: ignore[no-any-return]

    @property
    def forward_module(self) -> Any:
        return self.engine

    @property
    def unwrapped(self) -> nn.Module:
        return self.engine.module  # type: ignore[no-any-return]

    def backward(self, loss: torch.Tensor) -> None:
        self.engine.backward(loss, scale_wrt_gas=False)

    def update(self) -> tuple[float, float]:
        lr = float(self.engine.get_lr()[0])
        self.engine.step()
        norm = self.engine.get_global_grad_norm()
        self.engine.zero_grad()
        return (float(norm) if norm is not None else float("nan")), lr

    def raw_state(self) -> Iterator[tuple[str, torch.Tensor]]:
        module = self.engine.module
        if self._stage < 3:
            for name, value in module.state_dict().items():
                yield name, value.detach().to("cpu", copy=True)
            return
        import deepspeed

        # state_dict's keys (tied weights under both names, no non-persistent buffers), each parameter gathered.
        for name, value in module.state_dict(keep_vars=True).items():
            if hasattr(value, "ds_id"):
                with deepspeed.zero.GatheredParameters([value], modifier_rank=None):
                    yield name, value.detach().to("cpu", copy=True)
            else:
                yield name, value.detach().to("cpu", copy=True)

    def close(self) -> None:
        """Remove the shared-memory buffers DeepSpeed's CPU all-reduce left in /dev/shm (66 MiB each, per rank)."""
        super().close()
        addr, port = os.environ.get("MASTER_ADDR", ""), os.environ.get("MASTER_PORT", "")
        for path in Path("/dev/shm").glob(f"deepspeed_allreduce_buffer_*_{addr}_{port}_{self.ctx.local_rank}"):
            path.unlink(missing_ok=True)

    def save_shards(self, folder: Path) -> None:
        self.engine.save_checkpoint(str(folder), tag=_CHECKPOINT_TAG)

    def load_shards(self, folder: Path) -> None:
        path, _ = self.engine.load_checkpoint(
            str(folder), tag=_CHECKPOINT_TAG, load_optimizer_states=True, load_lr_scheduler_states=True
        )
        if path is None:
            raise FileNotFoundError(f"{folder} holds no DeepSpeed checkpoint (tag {_CHECKPOINT_TAG!r}).")
