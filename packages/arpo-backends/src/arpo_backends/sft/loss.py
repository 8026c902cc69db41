r"""The SFT loss: token-mean negative log-likelihood over the loss mask, exact under any split.

For the tokens t of a mini-batch with loss mask m_t (True on the assistant's tokens, ``sft.tokenization``)::

    L = −Σ_t m_t · log π(x_t | x_<t) / N_tokens          N_tokens = Σ_t m_t over the whole mini-batch

``N_tokens`` is ``LossScale.global_tokens`` (``batching.loss_scale`` of the mini-batch), known before the mini-batch
is cut into micro-batches and spread over ranks, so each call returns its exact share and the shares (values and
gradients) add up to L; the returned loss is multiplied by ``data_parallel_size`` so that backends which *average*
gradients over ranks (DDP, FSDP, DeepSpeed) get the sum. This is ``loss.aggregation``'s token-mean, the same
normaliser as ``arpo_loss``.

Deviation from TRL/transformers: their causal-LM loss is the mean over the tokens of each micro-batch (or, since
transformers 4.46, over ``num_items_in_batch`` of the accumulation steps on one rank), which weights ranks with
different token counts unequally; here every token of the mini-batch weighs the same wherever it lands. Tokens
outside the mask contribute exactly 0 even where their logprob is −inf or NaN (padding), by selection, not by
multiplication.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from arpo_backends.loss.aggregation import LossAggregation, LossScale, aggregate
from arpo_backends.loss.logprobs import token_log_probs
from arpo_backends.loss.objective import LossOutput

if TYPE_CHECKING:
    from arpo_backends.batching.collate import MicroBatch

__all__ = ["sft_loss", "sft_micro_batch_loss"]


def sft_loss(
    log_prob: torch.Tensor,  # (B, T): logp of each token under the model being trained (carries the gradient)
    loss_mask: torch.Tensor,  # (B, T): True/1 on trained tokens; 0 on prompt, tool-output and padding tokens
    scale: LossScale | None = None,
) -> LossOutput:
    """This call's share of the mini-batch's token-mean NLL; ``scale=None`` treats the call as the mini-batch.

    ``metrics`` (detached, each this call's share, so ``loss.sum_metrics`` over micro-batches and ranks gives the
    mini-batch value): ``loss`` and ``nll`` (the same number, ``loss`` named as ``arpo_loss`` names it),
    ``loss_tokens`` (a count).
    """
    if log_prob.shape != loss_mask.shape:
        raise ValueError(
            f"loss_mask has shape {tuple(loss_mask.shape)} but log_prob has {tuple(log_prob.shape)}; they must align "
            "token for token (loss.token_log_probs gives the logprob of token t at position t)."
        )
    mask = loss_mask.to(torch.bool)
    weight = mask.to(log_prob.dtype)
    token_nll = torch.where(mask, -log_prob, torch.zeros_like(log_prob))  # (B, T)
    if scale is None:
        scale = LossScale(global_tokens=float(weight.sum()), global_sequences=int((weight.sum(dim=-1) > 0).sum()))
    share = aggregate(token_nll, weight, LossAggregation.TOKEN_MEAN, scale)
    with torch.no_grad():
        metrics = {"loss": share.detach(), "nll": share.detach(), "loss_tokens": weight.detach().sum()}
    return LossOutput(share * scale.data_parallel_size, metrics)


def sft_micro_batch_loss(
    logits: torch.Tensor,  # (B, T, V): the model's output on batch.input_ids
    batch: MicroBatch,
) -> LossOutput:
    """``sft_loss`` of a collated micro-batch, from the logits (temperature 1), with the mini-batch's scale."""
    log_prob = token_log_probs(logits, batch.input_ids.to(logits.device))  # (B, T)
    return sft_loss(log_prob, batch.loss_mask.to(logits.device), batch.scale)
