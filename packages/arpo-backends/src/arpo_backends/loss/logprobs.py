r"""Per-token logprobs and entropies from a causal LM's logits, aligned with the tokens they score.

Every per-token tensor of arpo (``loss_mask``, ``advantages``, ``behaviour_logprobs``, and the logprobs below) is
indexed by the position of the token it describes, as ``input_ids`` is. A causal LM's logits at position t−1
predict token t, so::

    logp[b, t] = log_softmax(logits[b, p(t)] / τ)[input_ids[b, t]]      p(t) = t − 1 by default
    H[b, t]    = −Σ_v π_v log π_v,   π = softmax(logits[b, p(t)] / τ)
    logp[b, t] = H[b, t] = 0 where p(t) < 0 (the first token, always a prompt token with loss mask 0)

``predictor_index`` gives p(t) explicitly for the tree-packed layout, where the token before the first token of a
segment is the last token of its *parent* segment, not the previous position of the buffer. τ is the sampling
temperature of the rollout (verl divides logits by it likewise). Computed in float32 at least, as verl.
"""

from __future__ import annotations

import torch

__all__ = ["token_entropy", "token_log_probs"]


def _scaled_predictors(
    logits: torch.Tensor,  # (B, T, V)
    predictor_index: torch.Tensor | None,  # (B, T) or None
    temperature: float,
) -> tuple[torch.Tensor, int, torch.Tensor | None]:
    """(scaled logits of the predictors (B, T − lead, V) in ≥ float32, lead, bool (B, T) "has a predictor" or None).

    Default layout: the predictors of tokens 1..T−1 are logits[:, :−1] (a view; ``lead`` = 1 position without one).
    """
    if temperature <= 0:
        raise ValueError(f"temperature={temperature} must be > 0 (the rollout's sampling temperature; 1.0 in ARPO).")
    batch, length, vocab = logits.shape
    dtype = torch.promote_types(logits.dtype, torch.float32)
    if predictor_index is None:
        return logits[:, :-1].to(dtype) / temperature, 1, None
    if predictor_index.shape != (batch, length):
        raise ValueError(f"predictor_index has shape {tuple(predictor_index.shape)}, expected {(batch, length)}.")
    index = predictor_index.clamp(min=0).unsqueeze(-1).expand(batch, length, vocab)
    return logits.gather(1, index).to(dtype) / temperature, 0, predictor_index >= 0


def _place(values: torch.Tensor, lead: int, has: torch.Tensor | None) -> torch.Tensor:
    """(B, T − lead) → (B, T) with 0 where a token has no predictor."""
    if has is not None:
        return torch.where(has, values, torch.zeros_like(values))
    return torch.cat([values.new_zeros(values.shape[0], lead), values], dim=1)


def token_log_probs(
    logits: torch.Tensor,  # (B, T, V)
    input_ids: torch.Tensor,  # (B, T)
    *,
    temperature: float = 1.0,
    predictor_index: torch.Tensor | None = None,  # (B, T): position whose logits predict each token; −1: none
) -> torch.Tensor:
    """``(B, T)`` logprob of each token given what precedes it (0 where nothing does)."""
    scaled, lead, has = _scaled_predictors(logits, predictor_index, temperature)
    picked = scaled.gather(-1, input_ids[:, lead:].unsqueeze(-1)).squeeze(-1)  # (B, T − lead)
    return _place(picked - torch.logsumexp(scaled, dim=-1), lead, has)


def token_entropy(
    logits: torch.Tensor,  # (B, T, V)
    *,
    temperature: float = 1.0,
    predictor_index: torch.Tensor | None = None,  # (B, T)
) -> torch.Tensor:
    """``(B, T)`` entropy (nats) of the distribution each token was drawn from (0 where none).

    H = logsumexp(z) − Σ softmax(z)·z, as verl's ``entropy_from_logits``.
    """
    scaled, lead, has = _scaled_predictors(logits, predictor_index, temperature)
    entropy = torch.logsumexp(scaled, dim=-1) - (torch.softmax(scaled, dim=-1) * scaled).sum(dim=-1)
    return _place(entropy, lead, has)
