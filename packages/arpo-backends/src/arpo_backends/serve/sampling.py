"""One decoding step's sampling for a batch of sequences, each with its own parameters and random generator.

Mirrors vLLM's sampler, with its ``--logprobs-mode processed_logprobs``:

1. ``z = logits / T`` per row (a greedy row, ``T = 0``, uses ``T = 1`` here, as vLLM does);
2. top-k: entries below the k-th largest of ``z`` become ``-inf`` (``top_k`` ≤ 0 means off, as vLLM's 0 and -1);
3. top-p: sorting ``softmax(z)`` in decreasing order, an entry is kept while the mass before it is < ``p``
   (the most likely entry is always kept);
4. min-tokens: EOS and ``stop_token_ids`` are ``-inf`` until ``min_tokens`` tokens were generated;
5. ``logprobs = log_softmax(z)`` — the *processed* distribution the token is drawn from; masked entries are
   ``-inf`` (the response turns them into -9999.0);
6. the token: ``argmax(z)`` for greedy rows, else inverse-CDF sampling from ``exp(logprobs)`` with one uniform
   drawn from the row's own ``torch.Generator`` (vLLM draws an exponential race instead: both are exact samples
   from ``p``; one uniform per row is 20× cheaper than 49k exponentials). A row's draw depends only on its seed
   and its step, never on the other rows of the batch, so batched and sequential runs agree.

Deviation: vLLM's default ``raw_logprobs`` mode returns the model's distribution before steps 1–4; this server
always returns the processed one (identical when T = 1 and top-k/top-p are off). Penalties (repetition,
presence, frequency), ``min_p`` and ``logit_bias`` are not implemented: the server refuses requests that set them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

__all__ = ["RowParams", "StepResult", "sample_step"]


@dataclass(frozen=True, slots=True)
class RowParams:
    """What one row of the batch needs for this step."""

    temperature: float
    top_p: float
    top_k: int
    top_logprobs: int  # how many top entries to report; 0 for none
    generator: torch.Generator
    banned: tuple[int, ...] = ()  # token ids forced to -inf this step (EOS and stop ids before min_tokens)
    logprob: bool = True  # whether the sampled token's logprob is wanted (False: 0.0 is reported)


@dataclass(frozen=True, slots=True)
class StepResult:
    """Per row: the sampled id, its logprob, and the top entries ``[(id, logprob), ...]`` in decreasing order."""

    token_ids: list[int]
    logprobs: list[float]
    top: list[list[tuple[int, float]]]


def _apply_top_k(z: torch.Tensor, top_k: torch.Tensor) -> torch.Tensor:
    """``z`` (B, V) with entries below each row's k-th largest set to -inf (in place); rows with k ≤ 0 untouched."""
    vocab = z.shape[-1]
    k = torch.where(top_k <= 0, vocab, top_k.clamp(max=vocab))  # (B,)
    kth = torch.topk(z, int(k.max()), dim=-1).values.gather(-1, (k - 1).unsqueeze(-1))  # (B, 1)
    return z.masked_fill_(z < kth, float("-inf"))


def _apply_top_p(z: torch.Tensor, top_p: torch.Tensor, candidates: int) -> torch.Tensor:
    """``z`` (B, V) keeping, per row, the most likely entries until their mass reaches ``top_p`` (in place).

    Sorting 49k logits per row costs more than the rest of the sampling: the nucleus is looked for among the top
    ``candidates`` entries first (the top-k survivors, or 1024), and the whole row is sorted only when those do not
    hold ``top_p`` of the mass.
    """
    vocab = z.shape[-1]
    k = min(vocab, candidates)
    full = torch.softmax(z, dim=-1)  # (B, V); softmax, not exp: Tensor.exp is slow on very negative inputs
    while True:
        order = torch.topk(z, k, dim=-1).indices  # (B, k), decreasing
        probs = full.gather(-1, order)
        mass_before = torch.cumsum(probs, dim=-1) - probs
        if k == vocab or bool(((mass_before[:, -1] + probs[:, -1]) >= top_p).all()):
            break
        k = vocab
    keep_sorted = mass_before < top_p.unsqueeze(-1)
    keep_sorted[:, 0] = True
    keep = torch.zeros_like(z, dtype=torch.bool).scatter(-1, order, keep_sorted)
    return z.masked_fill_(~keep, float("-inf"))


def sample_step(logits: torch.Tensor, rows: Sequence[RowParams]) -> StepResult:
    """Sample one token per row of ``logits`` (B, V) and return it with its processed logprob and top entries."""
    z = logits.float()
    if any(r.temperature > 0 and r.temperature != 1.0 for r in rows):  # dividing by 1.0 changes nothing
        temps = torch.tensor([r.temperature if r.temperature > 0 else 1.0 for r in rows], dtype=torch.float32)
        z = z / temps.unsqueeze(-1)  # (B, V), a fresh tensor: the filters below work in place
    filtered = any(r.top_k > 0 or r.top_p < 1.0 or r.banned for r in rows)
    if filtered and z.data_ptr() == logits.data_ptr():
        z = z.clone()  # never filter the caller's tensor in place
    if any(r.top_k > 0 for r in rows):
        z = _apply_top_k(z, torch.tensor([r.top_k for r in rows]))
    if any(r.top_p < 1.0 for r in rows):
        nucleus = [r.top_k for r in rows if r.top_p < 1.0]
        candidates = max(nucleus) if min(nucleus) > 0 else 1024
        z = _apply_top_p(z, torch.tensor([r.top_p for r in rows], dtype=z.dtype), candidates)
    for i, r in enumerate(rows):
        if r.banned:
            z[i, list(r.banned)] = float("-inf")
    k_max = max((r.top_logprobs for r in rows), default=0)
    # (B, V); only when some row reports logprobs (a greedy evaluation reports none)
    logprobs = torch.log_softmax(z, dim=-1) if k_max > 0 or any(r.logprob for r in rows) else None

    greedy = [r.temperature <= 0 for r in rows]
    chosen = torch.argmax(z, dim=-1) if any(greedy) else torch.zeros(len(rows), dtype=torch.long)  # (B,)
    sampled = [i for i, g in enumerate(greedy) if not g]
    if sampled:
        u = torch.cat([torch.rand(1, generator=rows[i].generator, dtype=torch.float64) for i in sampled])  # (S,)
        probs = torch.softmax(z if len(sampled) == len(rows) else z[sampled], dim=-1)  # (S, V)
        cdf = torch.cumsum(probs, dim=-1, dtype=torch.float64)
        drawn = torch.searchsorted(cdf, (u * cdf[:, -1]).unsqueeze(-1), right=True).squeeze(-1)
        chosen[sampled] = drawn.clamp(max=z.shape[-1] - 1)
    chosen_ids: list[int] = chosen.tolist()
    if logprobs is None:
        return StepResult(chosen_ids, [0.0] * len(rows), [[] for _ in rows])
    picked = logprobs.gather(-1, chosen.unsqueeze(-1)).squeeze(-1).tolist()

    top: list[list[tuple[int, float]]] = [[] for _ in rows]
    if k_max > 0:
        values, ids = torch.topk(logprobs, min(k_max, logprobs.shape[-1]), dim=-1)
        value_rows, id_rows = values.tolist(), ids.tolist()
        for i, r in enumerate(rows):
            if r.top_logprobs > 0:
                top[i] = list(zip(id_rows[i][: r.top_logprobs], value_rows[i][: r.top_logprobs], strict=True))
    return StepResult(chosen_ids, picked, top)
