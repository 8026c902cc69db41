"""The ``Trainer`` protocol: what the train loop needs from a backend (DeepSpeed, FSDP, or a test double).

The loop (core, async) gathers finished groups, computes advantages and their attribution (``arpo_core.algo``),
drops groups older than ``max_staleness`` policy versions, and hands the rest to ``train_step`` — a blocking call,
run in a worker thread so rollouts keep flowing. After each step it calls ``publish_weights`` so the inference
servers sample from the new policy. Backends implement this in arpo-backends; core never imports torch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from arpo_core.algo.attribution import TokenAdvantages
from arpo_core.tree import RolloutTree

__all__ = ["TrainBatch", "Trainer", "WeightTarget"]


@dataclass(frozen=True)
class TrainBatch:
    """One optimisation step's data: groups with rewards, and each trajectory's tokens, masks and advantages."""

    step: int
    trees: tuple[RolloutTree, ...]
    tokens: tuple[tuple[TokenAdvantages, ...], ...]
    """Per tree, per trajectory (attribution already applied: soft or hard)."""
    policy_versions: tuple[int, ...]
    """Per tree, the policy version that generated it (for importance weights and metrics)."""

    @property
    def num_trajectories(self) -> int:
        return sum(len(t) for t in self.tokens)


@dataclass(frozen=True)
class WeightTarget:
    """Where new weights go after a step."""

    kind: str
    """``cpu_server`` (save + reload route), ``vllm_lora``, ``vllm_nccl``, or ``none``."""
    urls: tuple[str, ...] = ()
    directory: Path | None = None


@runtime_checkable
class Trainer(Protocol):
    @property
    def policy_version(self) -> int:
        """Number of optimiser steps taken (0 before the first)."""
        ...

    def train_step(self, batch: TrainBatch) -> Mapping[str, float]:
        """One PPO/GRPO step on the batch; returns scalar metrics (loss, clip fraction, grad norm, ...)."""
        ...

    def save(self, path: Path, *, data_position: Mapping[str, Any] | None = None) -> Path:
        """A checkpoint under the checkpoint root ``path`` that resumes exactly (model, optimiser, scheduler, RNG,
        policy version and the loop's ``data_position``), committed atomically; returns its folder."""
        ...

    def load(self, path: Path) -> Mapping[str, Any]:
        """Resume from a checkpoint folder or the newest complete one under a root; returns its data position."""
        ...

    def publish_weights(self, target: WeightTarget) -> Sequence[str]:
        """Push the current weights to inference; returns what was updated (for logs)."""
        ...
