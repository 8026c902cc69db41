"""``LossConfig``: every knob of the ARPO objective, with the paper's value as the default (spec §4, §6).

Frozen and ``extra="forbid"`` (a typo in a run file is an error, not a silently ignored option), one docstring per
field naming the paper or reference default. The defaults reproduce the published objective: PPO clip 0.2/0.2,
dual clip 3.0, token-mean, KL and entropy bonus off. The one deviation is the behaviour importance weight
(``importance_mode="truncate"``, cap 2.0), arpo's addition for asynchronous rollouts: with on-policy data it only
corrects the small inference-vs-trainer logprob mismatch, and ``importance_mode="off"`` is the paper exactly.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from arpo_backends.loss.aggregation import LossAggregation
from arpo_backends.loss.importance import ImportanceMode
from arpo_backends.loss.kl import KLEstimator
from arpo_backends.loss.surrogate import PolicyLoss

__all__ = ["LossConfig"]


class LossConfig(BaseModel):
    """The ARPO/GRPO objective on token tensors; identical for every backend."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

    policy_loss: PolicyLoss = PolicyLoss.PPO
    """Per-token surrogate. ``ppo``: clipped surrogate with dual clip (ARPO paper, verl 0.3 ``vanilla``);
    ``entropy_balanced``: AEPO's entropy-balanced clipping (the upper clip keeps a rescaled gradient)."""
    clip_low: float = Field(default=0.2, ge=0.0, lt=1.0)
    """ε_low: the ratio is clipped below at 1 − ε_low (acts on negative advantages). Paper: 0.2."""
    clip_high: float = Field(default=0.2, ge=0.0)
    """ε_high: the ratio is clipped above at 1 + ε_high (acts on positive advantages). Paper: 0.2."""
    dual_clip: float | None = Field(default=3.0, gt=1.0)
    """c of dual-clip PPO: for A < 0 the per-token loss is capped at −c·A. Paper/verl: 3.0; ``None`` turns it off."""
    loss_aggregation: LossAggregation = LossAggregation.TOKEN_MEAN
    """How per-token losses become one number. ``token-mean`` over all loss tokens of the mini-batch (paper)."""
    kl_coef: float = Field(default=0.0, ge=0.0)
    """Coefficient of the KL penalty to the reference policy, added to the loss. Paper/reference: 0 (off)."""
    kl_estimator: KLEstimator = KLEstimator.K3
    """Per-token KL estimator: ``k3`` (low-variance, verl ``low_var_kl``, the reference's), ``k1``, ``k2``."""
    entropy_coef: float = Field(default=0.0, ge=0.0)
    """Coefficient of the entropy bonus (subtracted from the loss). Paper/reference: 0 (off)."""
    importance_mode: ImportanceMode = ImportanceMode.TRUNCATE
    """Behaviour importance weight w = exp(logp_old − logp_behaviour) for stale/asynchronous data (arpo's addition,
    not in the paper): ``truncate`` min(w, cap) (TIS), ``mask`` w if w ≤ cap else 0 (AReaL decoupled PPO),
    ``off`` w = 1 (the paper). Tokens without a behaviour logprob always get w = 1."""
    importance_cap: float = Field(default=2.0, ge=1.0)
    """Cap C of the behaviour importance weight. TIS uses 2.0."""
    entropy_aware_advantage: bool = False
    """AEPO entropy-aware advantage Â·(1 + α·z(H)), z the standardised token entropy over the loss tokens.
    Off in ARPO."""
    entropy_advantage_coef: float = 0.2
    """α of the entropy-aware advantage. AEPO reference code: 0.2."""
