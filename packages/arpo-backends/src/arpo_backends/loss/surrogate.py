r"""Per-token policy surrogates, chosen through ``PolicyLoss`` and a small registry (as verl's ``core_algos``).

The dual-clip PPO surrogate of the paper (spec §4), as a loss to minimise, with r = exp(logp − logp_old)::

    ℓ = −min(r·A, clip(r, 1−ε_low, 1+ε_high)·A)         PPO clip
    ℓ = min(ℓ, −c·A)          for A < 0                 dual clip (Ye et al. 2020; verl's ``clip_ratio_c``)

Written out case by case, which is what the code does (``torch.where`` on strict inequalities)::

    A > 0, r > 1+ε_high:       ℓ = −A·(1+ε_high)         clipped high, no gradient
    A < 0, r < 1−ε_low:        ℓ = −A·(1−ε_low)          clipped low,  no gradient
    A < 0, r > c:              ℓ = −A·c                  dual clip,    no gradient
    otherwise:                 ℓ = −A·r

The case form equals verl's max/min form everywhere except exactly on a boundary, where verl's ``torch.maximum``
splits the gradient half and half and this form keeps the unclipped one; it also reports the three clip events
without a second comparison. Surrogates broadcast: ``ratio (*S, 1)`` against ``advantages (*S, D)`` evaluates the
D descendants of a shared token at once (tree-packed training, spec §6).

Note on the spec's wording "max(that, −c·A)": as an *objective* the dual clip is max(·, c·A); as the loss minimised
here it is min(ℓ, −c·A), exactly verl's ``torch.min(pg_losses3, clip_pg_losses1)``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

import torch

__all__ = [
    "POLICY_LOSSES",
    "PolicyLoss",
    "PolicyLossFn",
    "SurrogateTerms",
    "get_policy_loss",
    "ppo_surrogate",
    "register_policy_loss",
]


class PolicyLoss(str, Enum):
    PPO = "ppo"
    """Clipped surrogate with dual clip: the ARPO paper (verl 0.3 ``vanilla``)."""
    ENTROPY_BALANCED = "entropy_balanced"
    """AEPO's entropy-balanced clipping: the upper clip keeps a stop-gradient-rescaled gradient."""


@dataclass(frozen=True, slots=True)
class SurrogateTerms:
    """All of the broadcast shape of ``ratio`` and ``advantages``."""

    loss: torch.Tensor
    """Per-token (per-descendant) loss ℓ to minimise."""
    clipped_high: torch.Tensor
    """bool: A > 0 and r > 1 + ε_high."""
    clipped_low: torch.Tensor
    """bool: A < 0 and r < 1 − ε_low."""
    clipped_dual: torch.Tensor
    """bool: A < 0 and r > c."""


class PolicyLossFn(Protocol):
    def __call__(
        self,
        ratio: torch.Tensor,
        advantages: torch.Tensor,
        *,
        clip_low: float,
        clip_high: float,
        dual_clip: float | None,
    ) -> SurrogateTerms: ...


POLICY_LOSSES: dict[PolicyLoss, PolicyLossFn] = {}


def register_policy_loss(kind: PolicyLoss) -> Callable[[PolicyLossFn], PolicyLossFn]:
    """Decorator: make ``fn`` the surrogate for ``kind``."""

    def wrap(fn: PolicyLossFn) -> PolicyLossFn:
        POLICY_LOSSES[kind] = fn
        return fn

    return wrap


def get_policy_loss(kind: PolicyLoss | str) -> PolicyLossFn:
    try:
        return POLICY_LOSSES[PolicyLoss(kind)]
    except (KeyError, ValueError):
        known = ", ".join(k.value for k in POLICY_LOSSES)
        raise ValueError(f"policy loss {kind!r} is not registered; choose one of: {known}.") from None


@register_policy_loss(PolicyLoss.PPO)
def ppo_surrogate(
    ratio: torch.Tensor,  # (*S) or (*S, 1): r = exp(logp − logp_old)
    advantages: torch.Tensor,  # (*S) or (*S, D): per-token advantage (constant)
    *,
    clip_low: float,
    clip_high: float,
    dual_clip: float | None,
) -> SurrogateTerms:
    """Dual-clip PPO loss per token, broadcast over ``ratio`` and ``advantages``."""
    upper = 1.0 + clip_high
    lower = 1.0 - clip_low
    positive = advantages > 0
    negative = advantages < 0
    clipped_high = positive & (ratio > upper)
    clipped_low = negative & (ratio < lower)
    clipped_dual = negative & (ratio > dual_clip) if dual_clip is not None else torch.zeros_like(clipped_low)
    loss = -advantages * ratio
    loss = torch.where(clipped_high, -advantages * upper, loss)
    loss = torch.where(clipped_low, -advantages * lower, loss)
    if dual_clip is not None:
        loss = torch.where(clipped_dual, -advantages * dual_clip, loss)
    return SurrogateTerms(loss, clipped_high.expand_as(loss), clipped_low.expand_as(loss), clipped_dual.expand_as(loss))
