r"""AEPO's two policy-update refinements (Dong et al., arXiv 2510.14545), both off by default (spec §6).

**Entropy-balanced clipping** (``PolicyLoss.ENTROPY_BALANCED``). Plain PPO gives a token whose ratio passed the
upper clip (A > 0, r > 1+ε_high) a zero gradient; those are mostly high-entropy, exploratory tokens. AEPO keeps
the clipped *value* but lets a rescaled gradient through with a stop-gradient sg(·)::

    A > 0, r > 1+ε_high:   ℓ = −A · r · sg((1+ε_high) / r)      value −A·(1+ε_high),  ∂ℓ/∂logp = −A·(1+ε_high)

every other case is dual-clip PPO unchanged (see ``surrogate``). This is how AEPO's released verl code does it
(``max_bound = (1+ε_high)/sg(r)·r`` as the upper bound of ``torch.clamp``); the lower clip and the dual clip keep
their zero gradient. Like that code, it acts on every token past the upper clip, with no entropy threshold: the
paper's "high-entropy clipping term" is the upper-clip term itself.

**Entropy-aware advantage** (``LossConfig.entropy_aware_advantage``)::

    Ã = Â · (1 + α · z),   z = (H − mean H) / std H,   α = 0.2 (AEPO code)

with H the per-token entropy (detached) and mean/std (sample std, n − 1) over the loss tokens, each counted with
its weight (its multiplicity in the tree-packed view, so packed and expanded agree). Deviations from AEPO's code,
which standardises over the micro-batch in hand: the statistics can be taken over the whole mini-batch by passing
the summed ``entropy_moments`` of every micro-batch and rank (split-invariant; without them the call's own tokens
are used, as the reference); a std of 0 *or* fewer than two tokens gives std = 1 (the reference gets NaN for one).
"""

from __future__ import annotations

import torch

from arpo_backends.loss.surrogate import PolicyLoss, SurrogateTerms, ppo_surrogate, register_policy_loss

__all__ = ["entropy_aware_advantages", "entropy_balanced_surrogate", "entropy_moments", "standardized_entropy"]


@register_policy_loss(PolicyLoss.ENTROPY_BALANCED)
def entropy_balanced_surrogate(
    ratio: torch.Tensor,  # (*S) or (*S, 1)
    advantages: torch.Tensor,  # (*S) or (*S, D)
    *,
    clip_low: float,
    clip_high: float,
    dual_clip: float | None,
) -> SurrogateTerms:
    """Dual-clip PPO whose upper clip passes the gradient −A·(1+ε_high)·∂logp (stop-gradient rescaling)."""
    terms = ppo_surrogate(ratio, advantages, clip_low=clip_low, clip_high=clip_high, dual_clip=dual_clip)
    upper = 1.0 + clip_high
    kept = -advantages * ratio * (upper / ratio.detach())
    loss = torch.where(terms.clipped_high, kept, terms.loss)
    return SurrogateTerms(loss, terms.clipped_high, terms.clipped_low, terms.clipped_dual)


def entropy_moments(
    entropy: torch.Tensor,  # (*S): per-token entropy
    weight: torch.Tensor,  # (*S): loss weight (mask, or multiplicity in the packed view)
) -> torch.Tensor:
    """``(3,)`` float64 ``[Σw, Σw·H, Σw·H²]``: additive, so sum (all-reduce) it over micro-batches and ranks."""
    w = weight.detach().to(torch.float64)
    h = torch.where(w > 0, entropy.detach().to(torch.float64), torch.zeros_like(w))
    return torch.stack([w.sum(), (w * h).sum(), (w * h * h).sum()])


def standardized_entropy(
    entropy: torch.Tensor,  # (*S)
    weight: torch.Tensor,  # (*S)
    moments: torch.Tensor | None = None,  # (3,) from ``entropy_moments``, summed over the mini-batch
) -> torch.Tensor:
    """``(*S)`` z = (H − mean)/std over the weighted loss tokens (detached; 0 where the weight is 0)."""
    if moments is None:
        moments = entropy_moments(entropy, weight)
    m = moments.detach().to(device=entropy.device, dtype=torch.float64)
    count, s1, s2 = m[0], m[1], m[2]
    zero, one = torch.zeros_like(count), torch.ones_like(count)
    mean = torch.where(count > 0, s1 / torch.where(count > 0, count, one), zero)
    var = torch.where(count > 1, (s2 - s1 * mean) / torch.where(count > 1, count - 1.0, one), zero)
    # One-pass moments leave rounding noise where all entropies are equal: treat that as zero spread (std = 1).
    std = torch.where(var > 1e-12 * (1.0 + mean * mean), var.clamp(min=0.0).sqrt(), one)
    z = ((entropy.detach().to(torch.float64) - mean) / std).to(entropy.dtype)
    return torch.where(weight > 0, z, torch.zeros_like(z))


def entropy_aware_advantages(
    advantages: torch.Tensor,  # (*S) or (*S, D)
    entropy: torch.Tensor,  # (*S)
    weight: torch.Tensor,  # (*S)
    *,
    coef: float = 0.2,
    moments: torch.Tensor | None = None,  # (3,)
) -> torch.Tensor:
    """Ã = Â·(1 + coef·z(H)), same shape as ``advantages``; no gradient flows through the entropy."""
    z = standardized_entropy(entropy, weight, moments).to(advantages.dtype)
    if advantages.dim() == z.dim() + 1:
        z = z.unsqueeze(-1)
    return advantages * (1.0 + coef * z)
