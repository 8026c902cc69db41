r"""Logits only where the loss needs them: the LM head applied to the loss tokens' predictor positions.

A causal LM's last layer maps every position's hidden state to |V| logits (SmolLM2: 49,152), then the loss takes a
log-softmax over them — for every token of the batch, although only the generated tokens (loss mask 1) matter;
prompt, tool-result and padding positions are thrown away. On a CPU that is a fifth of the forward FLOPs and most
of the memory traffic (a (B, T, |V|) fp32 tensor, its log-softmax and its gradient).

``LogitSelector`` registers a forward pre-hook on the model's output embedding (``get_output_embeddings()``, the
LM head) that, while a selection is active, replaces its input ``(B, T, H)`` by the rows at the selected positions
``(N, H)``; the model then returns ``(N, |V|)`` logits. The rest of the forward (and FSDP's / ZeRO-3's own
hooks, which gather parameters) is unchanged. ``token_stats`` turns those rows into the usual ``(B, T)`` logprobs
and entropies (0 elsewhere), the same numbers ``loss.logprobs`` gives from full logits::

    predictor p = t − 1 of every token t with loss_mask[t] = 1
    logp[b, t] = log_softmax(lm_head(h[b, t − 1]) / τ)[x[b, t]],   H[b, t] likewise;  0 where loss_mask = 0
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

__all__ = ["LogitSelector", "predictor_mask", "token_stats"]


def predictor_mask(loss_mask: torch.Tensor) -> torch.Tensor:
    """``(B, T)`` bool: the positions whose logits predict a loss token (position t − 1 for token t)."""
    mask = torch.zeros_like(loss_mask, dtype=torch.bool)
    mask[:, :-1] = loss_mask[:, 1:].to(torch.bool)
    return mask


class LogitSelector:
    """Makes ``model``'s LM head compute only the selected positions while ``select(mask)`` is active."""

    def __init__(self, model: nn.Module) -> None:
        getter = getattr(model, "get_output_embeddings", None)
        head = getter() if callable(getter) else None
        if not isinstance(head, nn.Module):
            raise ValueError(
                f"{type(model).__name__} has no output embedding (LM head) to select logits at; arpo trains causal "
                "LMs with get_output_embeddings()."
            )
        self._mask: torch.Tensor | None = None
        self._handle = head.register_forward_pre_hook(self._hook)

    def _hook(self, module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
        if self._mask is None:
            return None
        hidden = args[0]
        if hidden.dim() != 3 or hidden.shape[:2] != self._mask.shape:
            raise RuntimeError(
                f"the LM head got hidden states of shape {tuple(hidden.shape)}, not (B, T, H) with (B, T) = "
                f"{tuple(self._mask.shape)}; logit selection needs the model to apply its head to every position."
            )
        return (hidden[self._mask], *args[1:])

    @contextmanager
    def select(self, mask: torch.Tensor) -> Iterator[None]:
        self._mask = mask
        try:
            yield
        finally:
            self._mask = None

    def remove(self) -> None:
        self._handle.remove()


def token_stats(
    logits: torch.Tensor,  # (K, V): logits at the predictor positions, in row-major order of the mask
    input_ids: torch.Tensor,  # (B, T)
    loss_mask: torch.Tensor,  # (B, T)
    *,
    temperature: float = 1.0,
    entropy: bool = False,
    rows: torch.Tensor | None = None,  # (n,) int64
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(B, T)`` logprobs (and entropies) of the loss tokens from their selected logits; 0 elsewhere.

    ``rows`` gives the logits row of each of the n loss tokens (row-major order); ``None``: one row per loss token,
    in that order (K = n). With prefix sharing several loss tokens read the same row (``batching.prefix``), whose
    log-softmax and entropy are then computed once.

    The result stays connected to ``logits`` even when no token is selected (``0·Σ logits``), so ``backward`` runs
    through the model on every rank — FSDP and ZeRO reduce gradients inside it and need every rank to take part.
    """
    if temperature <= 0:
        raise ValueError(f"temperature={temperature} must be > 0 (the rollout's sampling temperature).")
    target = loss_mask[:, 1:].to(torch.bool)  # (B, T − 1): token t = 1..T−1 is a loss token
    scaled = logits.to(torch.promote_types(logits.dtype, torch.float32)) / temperature  # (K, V)
    lse = torch.logsumexp(scaled, dim=-1)  # (K,)
    tokens = input_ids[:, 1:][target]  # (n,)
    if rows is None:
        picked = scaled.gather(-1, tokens.unsqueeze(-1)).squeeze(-1) - lse  # (n,)
    else:
        picked = scaled[rows, tokens] - lse[rows]  # (n,)
    anchor = 0.0 * scaled.sum()
    batch, length = input_ids.shape
    loss_rows, cols = target.nonzero(as_tuple=True)
    cols = cols + 1
    zeros = torch.zeros(batch, length, dtype=scaled.dtype, device=scaled.device)
    logp = zeros.index_put((loss_rows, cols), picked) + anchor
    if not entropy:
        return logp, None
    h = lse - (torch.softmax(scaled, dim=-1) * scaled).sum(dim=-1)  # (K,)
    if rows is not None:
        h = h[rows]  # (n,)
    return logp, zeros.index_put((loss_rows, cols), h) + anchor
