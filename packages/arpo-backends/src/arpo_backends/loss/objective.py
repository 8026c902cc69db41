r"""The ARPO objective on token tensors (spec §4, §6): one implementation for every backend.

Per token t of the mini-batch (loss weight m_t: 1 on generated tokens, 0 on prompt, tool-result and padding)::

    r_t  = exp(logp_t − logp_old,t)                                  proximal ratio (logp_old: the trainer's own,
                                                                    computed at the start of the step)
    Â_t  = A_t                  or  A_t·(1 + α·z(H_t))               AEPO entropy-aware advantage (optional)
    ℓ_t  = surrogate(r_t, Â_t)                                       dual-clip PPO or AEPO entropy-balanced clip
    w_t  = min(exp(logp_old,t − logp_behav,t), C)                    behaviour importance weight (stale data)
    L    = Σ_t m_t·( w_t·ℓ_t + β_KL·k3_t − β_H·H_t ) / N_tokens      token-mean over the whole mini-batch

N_tokens is the loss-token count of the *whole mini-batch* (``LossScale``), so the values returned for its
micro-batches and ranks add up to L exactly, gradients included. With one PPO epoch r = 1 on the first
micro-batch, but nothing here assumes it.

Tree-packed form (spec §6, ``packed_arpo_loss``): a token shared by the d trajectories of a prefix is evaluated
once, with one ratio and its d advantages; its loss is Σ_{j ≤ d} ℓ(r_t, Â_{t,j}) and its KL/entropy terms count d
times. That is the trajectory-expanded sum term for term, so the two agree to rounding, gradients included.

Deviations from the paper / verl 0.3, each for a reason:

* the log-ratio is clamped to [−20, 20] before ``exp`` (as later verl) so a wild token cannot overflow;
* tokens of weight 0 get log-ratio 0, KL δ 0 and entropy 0 before anything else, so garbage logprobs on padding
  cannot turn the loss into NaN (0·inf);
* the importance weight multiplies the policy surrogate only, not the KL or entropy terms (as AReaL);
* verl's per-micro-batch normaliser is replaced by the mini-batch's (see ``aggregation``).

Every metric is returned as this call's *share* (Σ over its tokens / N_tokens), so summing a metric over
micro-batches and ranks gives the mini-batch value; ``loss_tokens`` is a count and adds up the same way. ``kl`` is
returned only when reference logprobs are given and ``entropy`` only when entropies are (a term that was not
measured is left out rather than reported as 0). The two importance-weight maxima are in ``LossOutput.maxima``:
they combine by ``max``, not by sum.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import torch

from arpo_backends.loss import aepo as _aepo  # registers PolicyLoss.ENTROPY_BALANCED
from arpo_backends.loss.aggregation import LossAggregation, LossScale, aggregate
from arpo_backends.loss.config import LossConfig
from arpo_backends.loss.importance import behaviour_importance_weights
from arpo_backends.loss.kl import kl_penalty
from arpo_backends.loss.surrogate import get_policy_loss

__all__ = ["LOG_RATIO_CLAMP", "LossOutput", "arpo_loss", "packed_arpo_loss", "sum_metrics"]

LOG_RATIO_CLAMP = 20.0
"""|logp − logp_old| is clamped to this before ``exp``."""


@dataclass(frozen=True, slots=True)
class LossOutput:
    loss: torch.Tensor
    """Scalar to call ``backward()`` on: this call's share of the mini-batch loss × ``data_parallel_size``."""
    metrics: dict[str, torch.Tensor]
    """Detached scalars, each this call's share (sum over micro-batches and ranks): ``loss``, ``pg_loss``,
    ``kl``, ``entropy``, ``clip_frac_high``, ``clip_frac_low``, ``clip_frac_dual``, ``ratio_mean``, ``ppo_kl``
    (k1 of old vs new, verl's), ``approx_kl`` (k3 of old vs new), ``importance_weight_mean``,
    ``importance_truncated_frac``, ``behaviour_known_frac``, ``loss_tokens`` (a count); ``kl`` only with reference
    logprobs, ``entropy`` only with entropies."""
    maxima: dict[str, torch.Tensor] = field(default_factory=dict)
    """Detached scalars that combine by ``max`` over micro-batches and ranks (0 when no token counts):
    ``importance_weight_max`` (the largest weight the surrogate was multiplied by) and ``importance_weight_raw_max``
    (the largest ``exp(logp_old − logp_behav)`` before the cap, over tokens with a behaviour logprob)."""


def sum_metrics(outputs: Iterable[LossOutput | Mapping[str, torch.Tensor]]) -> dict[str, float]:
    """Mini-batch metrics from the outputs of all its micro-batches (on one rank: all-reduce SUM the rest)."""
    total: dict[str, float] = {}
    for out in outputs:
        metrics = out.metrics if isinstance(out, LossOutput) else out
        for name, value in metrics.items():
            total[name] = total.get(name, 0.0) + float(value)
    return total


def _check_shapes(reference: str, shape: torch.Size, **tensors: torch.Tensor | None) -> None:
    for name, tensor in tensors.items():
        if tensor is not None and tensor.shape != shape:
            raise ValueError(
                f"{name} has shape {tuple(tensor.shape)} but {reference} has {tuple(shape)}; every per-token tensor "
                "must have the same shape."
            )


def _objective(
    log_prob: torch.Tensor,  # (*S): logp under the policy being trained (carries the gradient)
    old_log_prob: torch.Tensor,  # (*S): logp_old
    advantages: torch.Tensor,  # (*S, D): advantage of each of the D trajectories through a token
    weights: torch.Tensor,  # (*S, D): 1 where that trajectory's token is a loss token, else 0
    *,
    config: LossConfig,
    behaviour_log_prob: torch.Tensor | None,  # (*S)
    ref_log_prob: torch.Tensor | None,  # (*S)
    entropy: torch.Tensor | None,  # (*S)
    entropy_moments: torch.Tensor | None,  # (3,)
) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(token_loss (*S) already weighted, multiplicity m (*S), metric numerators (*S) each, maxima (scalars))."""
    weights = weights.to(log_prob.dtype)
    advantages = advantages.to(log_prob.dtype)
    m = weights.sum(dim=-1)  # (*S): expanded loss tokens at each position
    valid = m > 0
    zeros = torch.zeros_like(log_prob)

    if config.entropy_aware_advantage:
        if entropy is None:
            raise ValueError("entropy_aware_advantage=True needs the per-token entropy; pass entropy=... .")
        advantages = _aepo.entropy_aware_advantages(
            advantages, entropy, m, coef=config.entropy_advantage_coef, moments=entropy_moments
        )

    log_ratio = torch.where(valid, log_prob - old_log_prob.detach(), zeros)
    log_ratio = log_ratio.clamp(min=-LOG_RATIO_CLAMP, max=LOG_RATIO_CLAMP)  # (*S)
    ratio = torch.exp(log_ratio)  # (*S)
    terms = get_policy_loss(config.policy_loss)(
        ratio.unsqueeze(-1),
        advantages,
        clip_low=config.clip_low,
        clip_high=config.clip_high,
        dual_clip=config.dual_clip,
    )  # (*S, D)

    if behaviour_log_prob is not None:
        behaviour_log_prob = torch.where(
            valid, behaviour_log_prob.to(log_prob.dtype), torch.full_like(zeros, torch.nan)
        )
    importance = behaviour_importance_weights(
        torch.where(valid, old_log_prob.detach(), zeros),
        behaviour_log_prob,
        cap=config.importance_cap,
        mode=config.importance_mode,
    )
    pg = (terms.loss * weights).sum(dim=-1) * importance.weights  # (*S)
    token_loss = pg

    kl: torch.Tensor | None = None  # (*S), when a reference is given
    if ref_log_prob is not None:
        kl = kl_penalty(log_prob, ref_log_prob.to(log_prob.dtype), config.kl_estimator, valid)
        if config.kl_coef > 0:
            token_loss = token_loss + config.kl_coef * m * kl
    elif config.kl_coef > 0:
        raise ValueError(f"kl_coef={config.kl_coef} needs the reference logprobs; pass ref_log_prob=... or set 0.")

    token_entropy: torch.Tensor | None = None  # (*S), when entropies are given
    if entropy is not None:
        token_entropy = torch.where(valid, entropy.to(log_prob.dtype), zeros)
        if config.entropy_coef > 0:
            token_loss = token_loss - config.entropy_coef * m * token_entropy
    elif config.entropy_coef > 0:
        raise ValueError(f"entropy_coef={config.entropy_coef} needs the per-token entropy; pass entropy=... or set 0.")

    with torch.no_grad():
        numerators = {
            "pg_loss": pg.detach(),
            "clip_frac_high": (terms.clipped_high * weights).sum(dim=-1),
            "clip_frac_low": (terms.clipped_low * weights).sum(dim=-1),
            "clip_frac_dual": (terms.clipped_dual * weights).sum(dim=-1),
            "ratio_mean": m * ratio.detach(),
            "ppo_kl": m * -log_ratio.detach(),
            "approx_kl": m * (ratio.detach() - 1.0 - log_ratio.detach()),
            "importance_weight_mean": m * importance.weights,
            "importance_truncated_frac": m * importance.truncated,
            "behaviour_known_frac": m * importance.known,
        }
        if kl is not None:
            numerators["kl"] = m * kl.detach()
        if token_entropy is not None:
            numerators["entropy"] = m * token_entropy.detach()
        maxima = _importance_maxima(importance.weights, old_log_prob, behaviour_log_prob, valid)
    return token_loss, m, numerators, maxima


def _importance_maxima(
    weights: torch.Tensor,  # (*S): the applied importance weight
    old_log_prob: torch.Tensor,  # (*S)
    behaviour_log_prob: torch.Tensor | None,  # (*S): NaN where unknown or not a loss position
    valid: torch.Tensor,  # (*S) bool: loss positions
) -> dict[str, torch.Tensor]:
    """Largest applied weight over the loss tokens, and largest raw weight over those with a behaviour logprob.

    The raw maximum is taken in log space and exponentiated in float64, so a wild behaviour logprob gives a large
    (or infinite) number rather than an overflow; with no such token both are 0 (the identity of ``max``)."""
    applied = torch.where(valid, weights.detach().to(torch.float64), 0.0)
    if behaviour_log_prob is None:
        raw_log = torch.full_like(applied, -torch.inf)
    else:
        known = valid & ~torch.isnan(behaviour_log_prob)
        gap = old_log_prob.detach().to(torch.float64) - behaviour_log_prob.detach().to(torch.float64)
        raw_log = torch.where(known, gap, -torch.inf)
    empty = applied.numel() == 0
    return {
        "importance_weight_max": applied.new_zeros(()) if empty else applied.max(),
        "importance_weight_raw_max": applied.new_zeros(()) if empty else torch.exp(raw_log.max()),
    }


def _finish(
    token_loss: torch.Tensor,
    m: torch.Tensor,
    numerators: dict[str, torch.Tensor],
    maxima: dict[str, torch.Tensor],
    config: LossConfig,
    scale: LossScale,
) -> LossOutput:
    share = aggregate(token_loss, m, LossAggregation(config.loss_aggregation), scale)
    with torch.no_grad():
        denominator = scale.global_tokens if scale.global_tokens > 0 else 1.0
        metrics = {name: value.sum() / denominator for name, value in numerators.items()}
        metrics["loss"] = share.detach()
        metrics["loss_tokens"] = m.detach().sum()
    return LossOutput(share * scale.data_parallel_size, metrics, maxima)


def _local_scale(m: torch.Tensor) -> LossScale:
    sequences = int((m.sum(dim=-1) > 0).sum()) if m.dim() == 2 else 0
    return LossScale(global_tokens=float(m.sum()), global_sequences=sequences)


def arpo_loss(
    log_prob: torch.Tensor,  # (B, T): logp of each token under the policy being trained
    old_log_prob: torch.Tensor,  # (B, T): logp_old, the trainer's logprob at the start of the step
    advantages: torch.Tensor,  # (B, T): per-token advantage (core's attribution, 0 off the loss tokens)
    loss_mask: torch.Tensor,  # (B, T): 1/True on generated tokens; 0 on prompt, tool-result and padding tokens
    *,
    config: LossConfig | None = None,
    scale: LossScale | None = None,
    behaviour_log_prob: torch.Tensor | None = None,  # (B, T): from the inference server, NaN where unknown
    ref_log_prob: torch.Tensor | None = None,  # (B, T): reference policy, for the KL penalty
    entropy: torch.Tensor | None = None,  # (B, T): per-token entropy of the policy (with grad for the bonus)
    entropy_moments: torch.Tensor | None = None,  # (3,): summed ``aepo.entropy_moments`` of the mini-batch
) -> LossOutput:
    """The loss of one micro-batch in the trajectory-expanded layout; ``scale=None`` treats it as the mini-batch."""
    config = config or LossConfig()
    _check_shapes(
        "log_prob",
        log_prob.shape,
        old_log_prob=old_log_prob,
        advantages=advantages,
        loss_mask=loss_mask,
        behaviour_log_prob=behaviour_log_prob,
        ref_log_prob=ref_log_prob,
        entropy=entropy,
    )
    weights = loss_mask.to(log_prob.dtype).unsqueeze(-1)  # (B, T, 1)
    token_loss, m, numerators, maxima = _objective(
        log_prob,
        old_log_prob,
        advantages.unsqueeze(-1),
        weights,
        config=config,
        behaviour_log_prob=behaviour_log_prob,
        ref_log_prob=ref_log_prob,
        entropy=entropy,
        entropy_moments=entropy_moments,
    )
    return _finish(token_loss, m, numerators, maxima, config, scale or _local_scale(m))


def packed_arpo_loss(
    log_prob: torch.Tensor,  # (N,): logp of each token of the packed tree (each shared token once)
    old_log_prob: torch.Tensor,  # (N,)
    advantages: torch.Tensor,  # (N, D): advantage of the j-th trajectory through each token (D = max sharing)
    descendant_mask: torch.Tensor,  # (N, D): 1 where the j-th trajectory exists and the token is a loss token
    *,
    config: LossConfig | None = None,
    scale: LossScale | None = None,
    behaviour_log_prob: torch.Tensor | None = None,  # (N,)
    ref_log_prob: torch.Tensor | None = None,  # (N,)
    entropy: torch.Tensor | None = None,  # (N,)
    entropy_moments: torch.Tensor | None = None,  # (3,)
) -> LossOutput:
    """Tree-packed loss: each shared token once, with the sum of its descendants' surrogates (token-mean only).

    ``scale.global_tokens`` counts *expanded* loss tokens (``descendant_mask.sum()`` over the mini-batch), so the
    value and gradients equal ``arpo_loss`` on the trajectory-expanded batch.
    """
    config = config or LossConfig()
    if LossAggregation(config.loss_aggregation) is not LossAggregation.TOKEN_MEAN:
        raise ValueError(
            f"loss_aggregation={config.loss_aggregation.value!r} is per sequence, which the tree-packed layout does "
            "not have; use token-mean (the paper's) or the trajectory-expanded arpo_loss."
        )
    if advantages.shape != descendant_mask.shape or advantages.dim() < 1 or advantages.shape[:-1] != log_prob.shape:
        raise ValueError(
            f"advantages {tuple(advantages.shape)} and descendant_mask {tuple(descendant_mask.shape)} must both be "
            f"log_prob's shape {tuple(log_prob.shape)} plus one trailing axis of descendants."
        )
    _check_shapes(
        "log_prob",
        log_prob.shape,
        old_log_prob=old_log_prob,
        behaviour_log_prob=behaviour_log_prob,
        ref_log_prob=ref_log_prob,
        entropy=entropy,
    )
    token_loss, m, numerators, maxima = _objective(
        log_prob,
        old_log_prob,
        advantages,
        descendant_mask,
        config=config,
        behaviour_log_prob=behaviour_log_prob,
        ref_log_prob=ref_log_prob,
        entropy=entropy,
        entropy_moments=entropy_moments,
    )
    return _finish(token_loss, m, numerators, maxima, config, scale or LossScale(global_tokens=float(m.sum())))
