r"""Per-token KL estimators between the policy and a reference policy (Schulman, "Approximating KL", 2020).

With δ = logp_ref − logp (the token sampled from the policy)::

    k1 = −δ                    unbiased, high variance, can be negative
    k2 = δ² / 2                biased, low variance
    k3 = exp(δ) − δ − 1        unbiased, low variance, ≥ 0  (verl ``low_var_kl``, the reference's choice)

The penalty ``kl_coef · token-mean(k)`` is added to the loss; the paper and reference run it with coefficient 0.
As verl 0.3, k3 is clamped to [−10, 10] (a token whose estimate leaves that range stops pushing the gradient), and δ
is set to 0 on tokens of weight 0 so garbage logprobs on padding can never produce a NaN.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum

import torch

__all__ = ["KL_ESTIMATORS", "KLEstimator", "kl_penalty"]


class KLEstimator(str, Enum):
    K1 = "k1"
    K2 = "k2"
    K3 = "k3"


def _k1(delta: torch.Tensor) -> torch.Tensor:
    return -delta


def _k2(delta: torch.Tensor) -> torch.Tensor:
    return 0.5 * delta.square()


def _k3(delta: torch.Tensor) -> torch.Tensor:
    return (torch.exp(delta) - delta - 1.0).clamp(min=-10.0, max=10.0)


KL_ESTIMATORS: dict[KLEstimator, Callable[[torch.Tensor], torch.Tensor]] = {
    KLEstimator.K1: _k1,
    KLEstimator.K2: _k2,
    KLEstimator.K3: _k3,
}


def kl_penalty(
    log_prob: torch.Tensor,  # (*S): logp under the policy being trained (carries the gradient)
    ref_log_prob: torch.Tensor,  # (*S): logp under the reference policy
    estimator: KLEstimator = KLEstimator.K3,
    valid: torch.Tensor | None = None,  # (*S) bool: tokens that count; δ = 0 elsewhere
) -> torch.Tensor:
    """Per-token KL estimate ``(*S)``."""
    delta = ref_log_prob.detach() - log_prob  # (*S)
    if valid is not None:
        delta = torch.where(valid, delta, torch.zeros_like(delta))
    return KL_ESTIMATORS[KLEstimator(estimator)](delta)
