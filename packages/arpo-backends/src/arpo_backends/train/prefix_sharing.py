r"""When a trainer runs a micro-batch prefix-shared (``batching.prefix``) rather than padded, and how.

The packed buffer saves linear-layer work (N tokens instead of B × T); what it costs in attention depends on how
attention sees the tree:

* ``arpo_tree`` (``train.tree_attention``; what ``load_policy`` gives an SDPA model when ``share_prefixes`` is on):
  SDPA run by run, Σ S·(d + S) query-key pairs — no more than the padded rows need;
* ``sdpa`` / ``eager`` with the dense tree mask (a 4D mask, which transformers passes through unchanged): N² pairs,
  since neither SDPA's CPU flash kernel nor its math kernel skips masked blocks, and an (N, N) mask;
* anything else (flash-attention 2, flex): no arbitrary mask, so the padded rows.

On a GPU the run-by-run way does not pay: each SDPA call costs a fixed few hundred µs of kernel launches (gathers,
GQA copies, the kernel, the concatenation) whatever its size, and an H200 ran SmolLM2-shaped group batches up to 2.5×
slower run by run than padded (and slower still with the runs padded into one batched call); the dense tree mask
through plain SDPA ran 0.9–1.8× the padded speed with 1.8–3.8× less memory (``bench/gpu_prefix.py``). So off a CPU
an ``arpo_tree`` model packs with the dense mask (``packing_attention``), within ``share_prefixes_max_tokens``.

Either way the choice is weighed against B × T² pairs padded (B × T(T+1)/2 without padding, where transformers
drops the mask and SDPA runs causally).
``choose_packing`` compares them with the cost model (forward and backward scale alike)::

    cost = tokens + pairs / L*,        L* = η · P_layer / (2·d_q)     (``attention_break_even``)

A token costs 2·P_layer FLOPs in a decoder layer's linear maps (P_layer: their weights, q/k/v/o and the gated MLP),
a query-key pair 4·d_q (QKᵀ and PV, d_q = heads × head_dim), and SDPA runs at about η = ½ the FLOP rate of the
linear layers' matrix products (SmolLM2-135M, 2 CPU threads, forward + backward: ≈ 2.2 ms per token in the matrix
products, ≈ 1.5 µs per query-key pair in SDPA's flash kernel; L* = ½ · 3,072 = 1,536). The dense mask is also
capped: N ≤ ``share_prefixes_max_tokens``, as the mask and SDPA's float copy of it grow as N².
"""

from __future__ import annotations

from typing import Any, cast

import numpy as np
import torch

from arpo_backends.batching.prefix import PrefixPacking, pack_prefixes
from arpo_backends.train.selective import LogitSelector, token_stats
from arpo_backends.train.tree_attention import TREE_ATTENTION, TREE_MASK_PLACEHOLDER, tree_runs

__all__ = [
    "ATTENTION_BREAK_EVEN",
    "PACKABLE_ATTENTION",
    "attention_break_even",
    "attention_implementation",
    "choose_packing",
    "packed_attention_mask",
    "packed_token_stats",
    "packing_attention",
]

ATTENTION_BREAK_EVEN = 1024.0
"""L* of a model whose config does not give its layer sizes (conservative: SmolLM2's is 1,536)."""

ATTENTION_EFFICIENCY = 0.5
"""η: SDPA's FLOP rate over the linear layers' (measured on a CPU, see the module docstring)."""

PACKABLE_ATTENTION = (TREE_ATTENTION, "sdpa", "eager")
"""Attention implementations the packed buffer can run with (run by run, or with the dense tree mask)."""


def attention_implementation(model: Any) -> str | None:
    """The model's ``config._attn_implementation`` (``sdpa``, ``eager``, ``arpo_tree``, ...), or None."""
    config = getattr(model, "config", None)
    name = getattr(config, "_attn_implementation", None)
    return name if isinstance(name, str) else None


def packing_attention(model: Any, device: torch.device | str) -> str | None:
    """How a packed forward of ``model`` on ``device`` attends: ``arpo_tree`` (run by run) on a CPU; off a CPU an
    ``arpo_tree`` model takes the dense tree mask through SDPA (``sdpa``), its fallback for forwards without a
    tree; other implementations as they are."""
    attention = attention_implementation(model)
    if attention == TREE_ATTENTION and torch.device(device).type != "cpu":
        return "sdpa"
    return attention


def attention_break_even(model: Any) -> float:
    """L* of a decoder-only transformer with a gated MLP (Llama, Qwen2, Mistral, SmolLM2) from its config;
    ``ATTENTION_BREAK_EVEN`` when the config lacks a size."""
    config = getattr(model, "config", None)
    sizes = [getattr(config, name, None) for name in ("hidden_size", "num_attention_heads", "intermediate_size")]
    if not all(isinstance(v, int) and v > 0 for v in sizes):
        return ATTENTION_BREAK_EVEN
    hidden, heads, inner = cast(list[int], sizes)
    kv_heads = int(getattr(config, "num_key_value_heads", None) or heads)
    head_dim = int(getattr(config, "head_dim", None) or hidden // heads)
    q_dim, kv_dim = heads * head_dim, kv_heads * head_dim
    layer_weights = 2 * hidden * q_dim + 2 * hidden * kv_dim + 3 * hidden * inner
    return ATTENTION_EFFICIENCY * layer_weights / (2 * q_dim)


def padded_cost(lengths: np.ndarray, width: int, break_even: float) -> float:
    """Cost of the padded forward of rows of ``lengths`` padded to ``width``."""
    rows = len(lengths)
    causal = bool((lengths == width).all())
    pairs = rows * width * (width + 1) / 2 if causal else rows * width * width
    return rows * width + pairs / break_even


def packed_cost(packing: PrefixPacking, attention: str, break_even: float) -> float:
    """Cost of the prefix-shared forward: attention run by run (``arpo_tree``) or dense over the buffer."""
    pairs = packing.tree_attention_pairs if attention == TREE_ATTENTION else packing.attention_pairs
    return packing.num_tokens + pairs / break_even


def choose_packing(
    input_ids: torch.Tensor,  # (B, T)
    attention_mask: torch.Tensor,  # (B, T)
    *,
    max_tokens: int,
    attention: str | None,
    break_even: float = ATTENTION_BREAK_EVEN,
) -> PrefixPacking | None:
    """The prefix-trie layout of the micro-batch if it is cheaper than the padded one, else None."""
    if attention not in PACKABLE_ATTENTION:
        return None
    packing = pack_prefixes(input_ids, attention_mask)
    if attention != TREE_ATTENTION and packing.num_tokens > max_tokens:
        return None
    padded = padded_cost(packing.lengths, int(input_ids.shape[1]), break_even)
    if packed_cost(packing, attention, break_even) >= padded:
        return None
    return packing


def packed_attention_mask(packing: PrefixPacking, attention: str | None) -> torch.Tensor:
    """The ``(1, 1, N, N)`` tree mask as the attention implementation takes it: bool for SDPA (True: attend), an
    additive float mask (0 or the most negative float) for eager attention, which adds it to the scores."""
    device = packing.token_ids.device
    mask = packing.attention_mask(device)
    if attention == "eager":
        blocked = torch.finfo(torch.float32).min
        return torch.zeros(mask.shape, dtype=torch.float32, device=device).masked_fill_(~mask, blocked)
    return mask


def packed_token_stats(
    module: Any,
    selector: LogitSelector,
    packing: PrefixPacking,
    input_ids: torch.Tensor,  # (B, T)
    loss_mask: torch.Tensor,  # (B, T)
    *,
    attention: str | None,
    temperature: float = 1.0,
    entropy: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``selective.token_stats`` of the padded rows from one forward of ``module`` over the packed buffer: the LM
    head runs once per node that predicts a loss token, and each loss token reads its predictor's row."""
    if attention not in PACKABLE_ATTENTION:
        raise ValueError(f"{attention} attention takes no tree mask; run the padded rows instead.")
    selected, rows = packing.predictor_rows(loss_mask)
    device = packing.token_ids.device
    inputs: dict[str, Any] = {"input_ids": packing.token_ids, "position_ids": packing.position_ids}
    if attention == TREE_ATTENTION:
        inputs.update(attention_mask=TREE_MASK_PLACEHOLDER.to(device), prefix_tree=tree_runs(packing, device))
    else:
        inputs.update(attention_mask=packed_attention_mask(packing, attention))
    with selector.select(selected):
        logits = module(**inputs).logits
    return token_stats(logits, input_ids, loss_mask, temperature=temperature, entropy=entropy, rows=rows)
