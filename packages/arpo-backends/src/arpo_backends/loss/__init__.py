"""The ARPO/GRPO objective as pure tensor functions, one implementation for every backend (spec §4, §6).

``arpo_loss`` (trajectory-expanded ``(B, T)``) and ``packed_arpo_loss`` (tree-packed ``(N,)``/``(N, D)``) combine:
the per-token surrogate (``surrogate``: dual-clip PPO; ``aepo``: entropy-balanced clipping), the behaviour
importance weight for stale data (``importance``), the KL penalty (``kl``), the entropy bonus and AEPO's
entropy-aware advantage (``aepo``), and a split-invariant token-mean (``aggregation``). ``LossConfig`` holds every
knob with the paper's default; ``logprobs`` turns logits into the per-token logprobs the loss takes.
"""

from __future__ import annotations

from arpo_backends.loss.aepo import (
    entropy_aware_advantages,
    entropy_balanced_surrogate,
    entropy_moments,
    standardized_entropy,
)
from arpo_backends.loss.aggregation import LossAggregation, LossScale, aggregate
from arpo_backends.loss.config import LossConfig
from arpo_backends.loss.importance import ImportanceMode, ImportanceWeights, behaviour_importance_weights
from arpo_backends.loss.kl import KL_ESTIMATORS, KLEstimator, kl_penalty
from arpo_backends.loss.logprobs import token_entropy, token_log_probs
from arpo_backends.loss.objective import LOG_RATIO_CLAMP, LossOutput, arpo_loss, packed_arpo_loss, sum_metrics
from arpo_backends.loss.surrogate import (
    POLICY_LOSSES,
    PolicyLoss,
    PolicyLossFn,
    SurrogateTerms,
    get_policy_loss,
    ppo_surrogate,
    register_policy_loss,
)

__all__ = [
    "KL_ESTIMATORS",
    "LOG_RATIO_CLAMP",
    "POLICY_LOSSES",
    "ImportanceMode",
    "ImportanceWeights",
    "KLEstimator",
    "LossAggregation",
    "LossConfig",
    "LossOutput",
    "LossScale",
    "PolicyLoss",
    "PolicyLossFn",
    "SurrogateTerms",
    "aggregate",
    "arpo_loss",
    "behaviour_importance_weights",
    "entropy_aware_advantages",
    "entropy_balanced_surrogate",
    "entropy_moments",
    "get_policy_loss",
    "kl_penalty",
    "packed_arpo_loss",
    "ppo_surrogate",
    "register_policy_loss",
    "standardized_entropy",
    "sum_metrics",
    "token_entropy",
    "token_log_probs",
]
