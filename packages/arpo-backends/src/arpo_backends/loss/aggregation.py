r"""Aggregation of per-token losses into one number, exact under any split into micro-batches and ranks.

A mini-batch is cut into micro-batches (gradient accumulation) and spread over data-parallel ranks. Every mode
below divides by a normaliser of the *whole mini-batch*, known before the split and passed in as ``LossScale``,
so each call returns its exact share and the shares add up::

    token-mean           L = Σ_{tokens} m·ℓ / N_tokens                          (paper, verl default)
    seq-mean-token-mean  L = Σ_{seqs} (Σ_t m·ℓ / Σ_t m) / N_seqs                (GRPO as first published)
    seq-mean-token-sum   L = Σ_{seqs} Σ_t m·ℓ / N_seqs

with m the loss weight of a token (the 0/1 loss mask; in the tree-packed view, the number of trajectories that
share the token) and N_tokens, N_seqs counted over the whole mini-batch (sequences with at least one loss token).
Summing the returned values over micro-batches and ranks gives L exactly; so do the gradients.

Deviation from verl 0.3: verl's ``agg_loss`` divides by the count of the micro-batch at hand, which makes the
loss depend on how the mini-batch was split (and, with dynamic batch sizes, weights micro-batches unequally).
Backends that *average* gradients over ranks (DDP, FSDP, DeepSpeed) set ``data_parallel_size`` so the loss is
multiplied by it and the average becomes the exact sum. An all-masked mini-batch gives 0, not NaN.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import torch

__all__ = ["LossAggregation", "LossScale", "aggregate"]


class LossAggregation(str, Enum):
    TOKEN_MEAN = "token-mean"
    SEQ_MEAN_TOKEN_MEAN = "seq-mean-token-mean"
    SEQ_MEAN_TOKEN_SUM = "seq-mean-token-sum"


@dataclass(frozen=True, slots=True)
class LossScale:
    """Normalisers of the whole mini-batch, the same on every micro-batch and rank."""

    global_tokens: float
    """Loss tokens in the mini-batch, over all micro-batches and ranks (trajectory-expanded count)."""
    global_sequences: int = 0
    """Sequences with at least one loss token in the mini-batch (only the ``seq-mean-*`` modes use it)."""
    data_parallel_size: int = 1
    """Ranks whose gradients the backend *averages*; the loss is multiplied by it so the average is the sum."""

    def __post_init__(self) -> None:
        if self.global_tokens < 0 or self.global_sequences < 0:
            raise ValueError(
                f"LossScale(global_tokens={self.global_tokens}, global_sequences={self.global_sequences}): counts "
                "cannot be negative; pass the mini-batch's loss-token and sequence counts."
            )
        if self.data_parallel_size < 1:
            raise ValueError(f"data_parallel_size={self.data_parallel_size} must be ≥ 1 (1 without data parallelism).")


def aggregate(
    token_loss: torch.Tensor,  # (B, T): per-token loss, already multiplied by its weight m
    weight: torch.Tensor,  # (B, T): m, the loss weight of each token (0 on prompt, tool and padding tokens)
    mode: LossAggregation,
    scale: LossScale,
) -> torch.Tensor:
    """This call's share of the mini-batch loss (a scalar), before the ``data_parallel_size`` factor."""
    if mode is LossAggregation.TOKEN_MEAN:
        if scale.global_tokens > 0:
            return token_loss.sum() / scale.global_tokens
        _check_empty(weight, "global_tokens")
        return token_loss.sum() * 0.0
    if token_loss.dim() != 2:
        raise ValueError(f"{mode.value} aggregation needs (B, T) tensors, got shape {tuple(token_loss.shape)}.")
    per_sequence = token_loss.sum(dim=-1)  # (B,)
    if mode is LossAggregation.SEQ_MEAN_TOKEN_MEAN:
        per_sequence = per_sequence / weight.sum(dim=-1).clamp(min=1.0)
    elif mode is not LossAggregation.SEQ_MEAN_TOKEN_SUM:  # pragma: no cover - exhaustive enum
        raise ValueError(f"unknown loss aggregation {mode!r}.")
    if scale.global_sequences > 0:
        return per_sequence.sum() / scale.global_sequences
    _check_empty(weight, "global_sequences")
    return per_sequence.sum() * 0.0


def _check_empty(weight: torch.Tensor, field: str) -> None:
    """A zero normaliser is only consistent with a call that has no loss tokens either."""
    if bool((weight > 0).any()):
        raise ValueError(
            f"LossScale.{field} is 0 but this micro-batch has loss tokens; pass the mini-batch's counts "
            "(batching.loss_scale) or scale=None for a single micro-batch."
        )
