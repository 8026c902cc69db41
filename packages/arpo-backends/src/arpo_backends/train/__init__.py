"""Trainers implementing core's ``Trainer`` protocol: ``fsdp`` (PyTorch FSDP2) and ``deepspeed`` (ZeRO 0–3).

``make_trainer(config)`` builds the one ``config.backend`` names, in the current process group (``init_distributed``
creates a world of one for a plain process). Both run the same step (``step.ppo_step``) on the same micro-batches
with the same AdamW, so they give the same losses and weights to fp32 rounding; only the sharding differs.
Backends are found through the ``arpo.backends`` entry-point group, so a third-party package can add one.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import TYPE_CHECKING

from arpo_backends.train.config import BACKENDS, TrainerConfig
from arpo_backends.train.dist import DistContext, finish, init_distributed

if TYPE_CHECKING:
    from arpo_backends.train.base import BaseTrainer

__all__ = [
    "BACKENDS",
    "DistContext",
    "TrainerConfig",
    "available_backends",
    "finish",
    "init_distributed",
    "make_trainer",
]


def available_backends() -> dict[str, str]:
    """Backend name → ``module:Class`` from the ``arpo.backends`` entry points."""
    return {ep.name: ep.value for ep in entry_points(group="arpo.backends")}


def make_trainer(config: TrainerConfig, ctx: DistContext | None = None) -> BaseTrainer:
    """The trainer of ``config.backend`` on this rank (collective: every rank calls it)."""
    found = {ep.name: ep for ep in entry_points(group="arpo.backends")}
    if config.backend not in found:
        known = ", ".join(sorted(found)) or "none installed"
        raise ValueError(f"unknown backend {config.backend!r}; choose one of: {known}.")
    cls = found[config.backend].load()
    return cls(config, ctx)  # type: ignore[no-any-return]
