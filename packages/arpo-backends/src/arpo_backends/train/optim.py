"""The optimiser and schedule both backends use: torch AdamW, linear warm-up then constant (spec §4)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch.optim.lr_scheduler import LambdaLR

from arpo_backends.train.config import OptimConfig

__all__ = ["make_optimizer", "make_scheduler", "warmup_factor"]


def make_optimizer(params: Iterable[torch.nn.Parameter], config: OptimConfig) -> torch.optim.AdamW:
    """AdamW with torch's fused kernel where every parameter allows it (one pass per tensor instead of the per-tensor
    loop's several: the update of SmolLM2-135M on 2 CPU cores took 0.26 s instead of 0.66 s), else ``foreach``.
    The fused and loop kernels compute the same update up to float rounding."""
    params = list(params)
    kwargs: dict[str, Any] = {
        "lr": config.lr,
        "betas": config.betas,
        "eps": config.eps,
        "weight_decay": config.weight_decay,
    }
    if params and _fusable(params):
        try:
            return torch.optim.AdamW(params, fused=True, **kwargs)
        except (RuntimeError, ValueError, TypeError):  # a device, dtype or tensor subclass the fused kernel refuses
            pass
    return torch.optim.AdamW(params, foreach=True, **kwargs)


def _fusable(params: list[torch.nn.Parameter]) -> bool:
    devices = {p.device.type for p in params}
    return len(devices) == 1 and all(p.dtype.is_floating_point for p in params)


def warmup_factor(step: int, warmup_steps: int) -> float:
    """LR multiplier at optimiser update ``step`` (0-based): (step + 1) / warmup over the warm-up, then 1."""
    if warmup_steps <= 0 or step >= warmup_steps:
        return 1.0
    return (step + 1) / warmup_steps


def make_scheduler(optimizer: torch.optim.Optimizer, config: OptimConfig) -> LambdaLR:
    warmup = config.warmup_steps
    return LambdaLR(optimizer, lambda step: warmup_factor(step, warmup))
