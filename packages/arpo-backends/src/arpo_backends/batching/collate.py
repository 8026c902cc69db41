r"""Padding trajectory samples into the tensors a trainer feeds its model and the loss.

Right padding to the longest row (rounded up to ``pad_to_multiple_of``); every tensor is ``(B, T)`` and aligned with
``input_ids`` (the logprob of token t comes from the logits at t−1: see ``loss.logprobs``)::

    input_ids           int64    token ids; ``pad_token_id`` on padding
    attention_mask      int64    1 on real tokens, 0 on padding
    position_ids        int64    0, 1, …, L−1 on real tokens; 0 on padding
    loss_mask           bool     True on generated tokens; False on prompt, tool-result and padding tokens
    advantages          float32  per-token advantage; 0 off the loss tokens
    behaviour_logprobs  float32  the inference server's logprob; NaN where unknown (prompt, tool, padding, or a
                                 server that returned none); the loss gives those tokens importance weight 1

Each ``MicroBatch`` carries the ``LossScale`` of the whole mini-batch, so ``arpo_loss(..., scale=mb.scale)`` over
all micro-batches and ranks sums to the exact mini-batch token-mean.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from arpo_backends.batching.samples import TrajectorySample
from arpo_backends.loss.aggregation import LossScale

__all__ = ["MicroBatch", "collate", "loss_scale", "padded_length"]


@dataclass(frozen=True, slots=True, eq=False)
class MicroBatch:
    input_ids: torch.Tensor  # (B, T) int64
    attention_mask: torch.Tensor  # (B, T) int64
    position_ids: torch.Tensor  # (B, T) int64
    loss_mask: torch.Tensor  # (B, T) bool
    advantages: torch.Tensor  # (B, T) float32
    behaviour_logprobs: torch.Tensor  # (B, T) float32, NaN where unknown
    scale: LossScale
    """Normalisers of the whole mini-batch (not of this micro-batch)."""
    keys: tuple[tuple[str, int], ...]
    """``(group_id, trajectory)`` of each row."""
    policy_versions: tuple[int | None, ...]
    """Oldest policy version of each row."""

    @property
    def num_rows(self) -> int:
        return int(self.input_ids.shape[0])

    @property
    def num_loss_tokens(self) -> int:
        """Loss tokens in this micro-batch (``scale.global_tokens`` is the mini-batch's)."""
        return int(self.loss_mask.sum())

    @property
    def padded_tokens(self) -> int:
        """B × T: what this micro-batch costs a padded forward pass."""
        return int(self.input_ids.numel())

    def to(self, device: torch.device | str) -> MicroBatch:
        return MicroBatch(
            self.input_ids.to(device),
            self.attention_mask.to(device),
            self.position_ids.to(device),
            self.loss_mask.to(device),
            self.advantages.to(device),
            self.behaviour_logprobs.to(device),
            self.scale,
            self.keys,
            self.policy_versions,
        )


def padded_length(length: int, pad_to_multiple_of: int = 1) -> int:
    """``length`` rounded up to a multiple of ``pad_to_multiple_of``."""
    if pad_to_multiple_of < 1:
        raise ValueError(f"pad_to_multiple_of={pad_to_multiple_of} must be ≥ 1.")
    return -(-length // pad_to_multiple_of) * pad_to_multiple_of


def loss_scale(samples: Sequence[TrajectorySample], data_parallel_size: int = 1) -> LossScale:
    """The normalisers of a mini-batch: its loss tokens and its sequences with at least one loss token."""
    tokens = sum(s.num_loss_tokens for s in samples)
    sequences = sum(1 for s in samples if s.num_loss_tokens > 0)
    return LossScale(global_tokens=float(tokens), global_sequences=sequences, data_parallel_size=data_parallel_size)


def collate(
    samples: Sequence[TrajectorySample],
    *,
    scale: LossScale | None = None,
    pad_token_id: int = 0,
    pad_to_multiple_of: int = 1,
) -> MicroBatch:
    """Right-padded tensors of ``samples`` in the given order; ``scale=None`` makes them the whole mini-batch."""
    if not samples:
        raise ValueError("cannot collate an empty list of trajectories; a micro-batch needs at least one row.")
    rows = len(samples)
    width = padded_length(max(s.length for s in samples), pad_to_multiple_of)
    input_ids = np.full((rows, width), pad_token_id, dtype=np.int64)
    attention = np.zeros((rows, width), dtype=np.int64)
    positions = np.zeros((rows, width), dtype=np.int64)
    loss_mask = np.zeros((rows, width), dtype=np.bool_)
    advantages = np.zeros((rows, width), dtype=np.float32)
    behaviour = np.full((rows, width), np.nan, dtype=np.float32)
    for row, s in enumerate(samples):
        n = s.length
        input_ids[row, :n] = s.token_ids
        attention[row, :n] = 1
        positions[row, :n] = np.arange(n)
        loss_mask[row, :n] = s.loss_mask
        advantages[row, :n] = np.where(s.loss_mask, s.advantages, 0.0)
        behaviour[row, :n] = s.behaviour_logprobs
    return MicroBatch(
        input_ids=torch.from_numpy(input_ids),
        attention_mask=torch.from_numpy(attention),
        position_ids=torch.from_numpy(positions),
        loss_mask=torch.from_numpy(loss_mask),
        advantages=torch.from_numpy(advantages),
        behaviour_logprobs=torch.from_numpy(behaviour),
        scale=scale if scale is not None else loss_scale(samples),
        keys=tuple(s.key for s in samples),
        policy_versions=tuple(s.policy_version for s in samples),
    )
