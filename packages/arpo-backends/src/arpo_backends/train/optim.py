"""The optimiser and schedule both backends use: torch AdamW, linear warm-up then constant (spec §4)."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch.optim.lr_scheduler import LambdaLR

from arpo_backends.train.config import OptimConfig

__all__ = ["make_optimizer", "make_scheduler", "warmup_factor"]


def make_optimizer(params: Iterable[torch.nn.Parameter], config: OptimConfig) -> torch.optim.AdamW:
    return torch.optim.AdamW(
        list(params), lr=config.lr, betas=config.betas, eps=config.eps, weight_decay=config.weight_decay
    )


def warmup_factor(step: int, warmup_steps: int) -> float:
    """LR multiplier at optimiser update ``step`` (0-based): (step + 1) / warmup over the warm-up, then 1."""
    if warmup_steps <= 0 or step >= warmup_steps:
        return 1.0
    return (step + 1) / warmup_steps


def make_scheduler(optimizer: torch.optim.Optimizer, config: OptimConfig) -> LambdaLR:
    warmup = config.warmup_steps
    return LambdaLR(optimizer, lambda step: warmup_factor(step, warmup))
