r"""Attention over the prefix-trie buffer run by run, without a dense (N, N) mask (``batching.prefix``).

With a tree mask SDPA computes all N² query-key pairs of the buffer: neither its CPU flash kernel nor its math
kernel skips masked blocks, so sharing a prompt among M completions of length C costs (P + M·C)² pairs, against
M·(P + C)² padded — more attention than the padded rows whenever completions are long. Here each ``TrieRun`` (the
S nodes a row added, hanging from its d ancestors) is one SDPA call: its queries against the keys and values of its
context and its own, causal within the run::

    out[start:end] = SDPA(q[start:end], k[context ∪ start:end], v[...], mask = [1…1 | causal])   (S, d + S)

Σ S·(d + S) pairs: each row's new tokens see exactly the keys they see in the padded row, so every node gets the
same attention output as its padded positions (bit for bit on a CPU with one thread, in our checks), and the
gradients of shared keys add up through ``index_select``.

transformers dispatches attention by ``config._attn_implementation``; ``enable_tree_attention`` switches an SDPA
model to ``arpo_tree`` for good (registered here, with SDPA's mask builder): a forward that passes
``prefix_tree=TreeRuns`` as a keyword gets run-by-run attention; every other forward is exactly SDPA. The switch is
permanent, not per forward, so that activation checkpointing, which re-runs each layer during backward, dispatches
the same way again. Such a forward also passes ``TREE_MASK_PLACEHOLDER`` as its attention mask: transformers returns a
4D mask unchanged (no (N, N) mask is built), and if a wrapper ever dropped ``prefix_tree`` the empty mask would make
SDPA fail instead of silently attending to the whole buffer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask
from transformers.modeling_utils import AttentionInterface

from arpo_backends.batching.prefix import PrefixPacking

__all__ = ["TREE_ATTENTION", "TREE_MASK_PLACEHOLDER", "TreeRuns", "enable_tree_attention", "tree_runs"]

TREE_ATTENTION = "arpo_tree"
TREE_MASK_PLACEHOLDER = torch.ones(1, 1, 0, 0, dtype=torch.bool)


@dataclass(frozen=True, slots=True, eq=False)
class TreeRuns:
    """The runs of one packed forward, on the model's device (built once, used by every layer)."""

    bounds: tuple[tuple[int, int], ...]
    """``(start, end)`` of each run: its queries, in buffer order."""
    keys: tuple[torch.Tensor, ...]
    """``(d + S,)`` int64: the buffer positions each run's queries see (its context, then itself)."""
    masks: tuple[torch.Tensor | None, ...]
    """``(1, 1, S, d + S)`` bool (context all visible, causal within the run); None for a root run (d = 0), which
    SDPA runs causally."""


def tree_runs(packing: PrefixPacking, device: torch.device | str) -> TreeRuns:
    bounds: list[tuple[int, int]] = []
    keys: list[torch.Tensor] = []
    masks: list[torch.Tensor | None] = []
    for run in packing.runs:
        size, depth = run.end - run.start, len(run.context)
        bounds.append((run.start, run.end))
        keys.append(torch.cat([torch.from_numpy(run.context), torch.arange(run.start, run.end)]).to(device))
        if depth == 0:
            masks.append(None)
            continue
        mask = torch.ones(size, depth + size, dtype=torch.bool)
        mask[:, depth:] = torch.ones(size, size, dtype=torch.bool).tril()
        masks.append(mask.view(1, 1, size, depth + size).to(device))
    return TreeRuns(tuple(bounds), tuple(keys), tuple(masks))


def _tree_attention(
    module: torch.nn.Module,
    query: torch.Tensor,  # (1, heads, N, head_dim)
    key: torch.Tensor,  # (1, kv_heads, N, head_dim)
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    prefix_tree: TreeRuns | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """SDPA; run by run over the buffer when the forward passed ``prefix_tree``."""
    if prefix_tree is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    outputs = []
    for (start, end), keys, mask in zip(prefix_tree.bounds, prefix_tree.keys, prefix_tree.masks, strict=True):
        out, _ = sdpa_attention_forward(
            module,
            query[:, :, start:end],
            key.index_select(2, keys),
            value.index_select(2, keys),
            mask,
            **kwargs,
        )
        outputs.append(out)  # (1, S, heads, head_dim)
    return torch.cat(outputs, dim=1), None


AttentionInterface.register(TREE_ATTENTION, _tree_attention)
AttentionMaskInterface.register(TREE_ATTENTION, sdpa_mask)


def enable_tree_attention(model: Any) -> None:
    """Switch a Hugging Face model that uses SDPA to ``arpo_tree`` (SDPA unless a forward passes ``prefix_tree``);
    other attention implementations are left as they are."""
    config = getattr(model, "config", None)
    if getattr(config, "_attn_implementation", None) == "sdpa":
        model.set_attn_implementation(TREE_ATTENTION)
