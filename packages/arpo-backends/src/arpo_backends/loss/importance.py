r"""Behaviour importance weights for stale (asynchronous) rollouts: decoupled PPO with truncation.

Rollouts for step k+1 are sampled while step k trains, so a trajectory may come from an older policy π_behav
(its logprobs are returned by the inference server). The trainer recomputes logp_old with its own weights at the
start of the step, and PPO's ratio r = π_θ / π_old stays the proximal ratio of the clipped surrogate. The
off-policy gap between π_old and π_behav is corrected per token by::

    w = exp(logp_old − logp_behav)                 (detached: both are constants of the step)
    truncate (TIS):           w ← min(w, C)
    mask (AReaL decoupled):   w ← w if w ≤ C else 0
    off:                      w ← 1 (the paper: no correction)

and w multiplies the token's clipped surrogate. A token with no behaviour logprob (NaN: a server that gave none)
gets w = 1. The weight is computed in log space and capped before ``exp``, so it never overflows.

Deviations: AReaL drops masked tokens from the normaliser too; here they keep their place in the mini-batch's
token count (they contribute 0) so that the normaliser is known before the forward pass and the token-mean stays
split-invariant. TIS (Yao et al., 2025) truncates above only; so does this.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum

import torch

__all__ = ["ImportanceMode", "ImportanceWeights", "behaviour_importance_weights"]


class ImportanceMode(str, Enum):
    OFF = "off"
    TRUNCATE = "truncate"
    MASK = "mask"


@dataclass(frozen=True, slots=True)
class ImportanceWeights:
    weights: torch.Tensor
    """``(*S)`` w per token (detached); 1 where the behaviour logprob is unknown or the mode is ``off``."""
    truncated: torch.Tensor
    """``(*S)`` bool: the raw weight exceeded the cap (truncated or masked)."""
    known: torch.Tensor
    """``(*S)`` bool: a behaviour logprob was available."""


def behaviour_importance_weights(
    old_log_prob: torch.Tensor,  # (*S): logp_old, the trainer's logprob at the start of the step
    behaviour_log_prob: torch.Tensor | None,  # (*S): logp_behav from the inference server, NaN where unknown
    *,
    cap: float,
    mode: ImportanceMode,
) -> ImportanceWeights:
    """Per-token behaviour importance weights; ``behaviour_log_prob=None`` means none is known (w = 1)."""
    old = old_log_prob.detach()
    if behaviour_log_prob is None or mode is ImportanceMode.OFF:
        ones = torch.ones_like(old)
        known = (
            torch.zeros_like(old, dtype=torch.bool)
            if behaviour_log_prob is None
            else ~torch.isnan(behaviour_log_prob.detach())
        )
        return ImportanceWeights(ones, torch.zeros_like(old, dtype=torch.bool), known)
    if behaviour_log_prob.shape != old.shape:
        raise ValueError(
            f"behaviour_log_prob has shape {tuple(behaviour_log_prob.shape)} but old_log_prob has {tuple(old.shape)}; "
            "they must align token for token."
        )
    behaviour = behaviour_log_prob.detach().to(old.dtype)
    known = ~torch.isnan(behaviour)
    log_w = torch.where(known, old - behaviour, torch.zeros_like(old))  # (*S); 0 where unknown
    log_cap = math.log(cap)
    truncated = known & (log_w > log_cap)
    weights = torch.exp(log_w.clamp(max=log_cap))
    if mode is ImportanceMode.MASK:
        weights = torch.where(truncated, torch.zeros_like(weights), weights)
    return ImportanceWeights(weights, truncated, known)
