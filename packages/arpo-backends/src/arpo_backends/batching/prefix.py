r"""The prefix-trie layout of a padded micro-batch: every token shared by several rows computed once.

The M trajectories of a GRPO/ARPO group share their prompt (ARPO's branches share longer prefixes), and a causal LM
gives identical token prefixes identical hidden states, so the rows of a micro-batch can be merged into a token
trie — a forest, one root per distinct first token, whatever group the rows come from — and the model run once on
its N nodes instead of the B × T padded tokens. The nodes are laid out in insertion order (row by row, so a parent
always precedes its children) in one buffer::

    token_ids     (1, N)     int64   the token of each node
    position_ids  (1, N)     int64   its depth (0 at a root): the position it has in every row through it
    gather_index  (B, T)     int64   buffer position of the padded layout's token (b, t); 0 on padding
    attention_mask()  (1, 1, N, N)  bool  tree-causal: node i sees node j iff j is i or an ancestor of i

A model run on the buffer with that mask and those positions gives node ``gather_index[b, t]`` the hidden state of
(b, t) in the padded run (the same keys, the same rotary positions; only the order of float sums differs), so
``h_packed[gather_index]`` is the padded ``(B, T, H)`` and autograd adds the gradients of the rows that share a node.
Loss token (b, t) is predicted by node ``gather_index[b, t − 1]``; at a branch point one node predicts different
next tokens for different rows, so its logits are computed once and each row picks its own target
(``predictor_rows``).

Row b's new nodes (those no earlier row created) are contiguous in the buffer: a ``TrieRun`` ``start:end`` hanging
from ``context``, the path of its ancestors (``gather_index[b, :d]``, d the depth of ``start``; empty for a root).
Attention can go run by run instead of through the dense mask — the run's queries over its context's keys and its
own, causal within the run — which touches Σ S·(d + S) query-key pairs (``tree_attention_pairs``) instead of N²
(``train.tree_attention``). ``train.prefix_sharing`` weighs either against the padded layout before choosing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["PrefixPacking", "TrieRun", "pack_prefixes"]


@dataclass(frozen=True, slots=True, eq=False)
class TrieRun:
    """The nodes one row added to the trie: buffer positions ``start:end``, hanging from ``context``."""

    start: int
    end: int
    context: np.ndarray
    """``(d,)`` int64: buffer positions of the run's ancestors, root first (empty for a new root)."""


@dataclass(frozen=True, slots=True, eq=False)
class PrefixPacking:
    token_ids: torch.Tensor  # (1, N) int64
    position_ids: torch.Tensor  # (1, N) int64, depth of the node
    gather_index: torch.Tensor  # (B, T) int64, buffer position of (b, t); 0 on padding
    parents: np.ndarray
    """``(N,)`` int64: buffer position of each node's parent, −1 at a root."""
    lengths: np.ndarray
    """``(B,)`` int64: real tokens of each row (the rest of the row is padding)."""
    runs: tuple[TrieRun, ...]
    """The rows' runs of new nodes, in buffer order (they tile the buffer)."""

    @property
    def num_tokens(self) -> int:
        """N, the tokens the model runs on."""
        return int(self.token_ids.shape[1])

    @property
    def attention_pairs(self) -> int:
        """N²: query-key pairs a dense-mask attention computes over the buffer."""
        return self.num_tokens**2

    @property
    def tree_attention_pairs(self) -> int:
        """Σ S·(d + S) over the runs: query-key pairs of attention run by run."""
        return sum((r.end - r.start) * (len(r.context) + r.end - r.start) for r in self.runs)

    def attention_mask(self, device: torch.device | str | None = None) -> torch.Tensor:
        """``(1, 1, N, N)`` bool, True where node i attends node j (j is i or one of its ancestors)."""
        n = self.num_tokens
        mask = np.zeros((n, n), dtype=np.bool_)
        for i, parent in enumerate(self.parents.tolist()):  # parents come first: row i = its parent's row + i
            if parent >= 0:
                mask[i] = mask[parent]
            mask[i, i] = True
        return torch.from_numpy(mask).view(1, 1, n, n).to(device)

    def predictor_rows(self, loss_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Where to compute logits for the ``(B, T)`` ``loss_mask``: ``(selected, rows)``.

        ``selected`` ``(1, N)`` bool marks the nodes that predict a loss token (each once, even when rows through
        it predict different tokens); ``rows`` ``(n,)`` int64 gives, for every loss token in row-major order (token
        t ≥ 1 of each row, as ``selective.token_stats`` enumerates them), its predictor's index among the selected
        nodes (the order of ``hidden[selected]``)."""
        index = self.gather_index.to(loss_mask.device)
        predictors = index[:, :-1][loss_mask[:, 1:].to(torch.bool)]  # (n,) node before each loss token
        selected = torch.zeros(self.num_tokens, dtype=torch.bool, device=loss_mask.device)
        selected[predictors] = True
        rank = torch.cumsum(selected, dim=0) - 1  # (N,) index of a selected node among the selected
        return selected.unsqueeze(0), rank[predictors]

    def to(self, device: torch.device | str) -> PrefixPacking:
        return PrefixPacking(
            self.token_ids.to(device),
            self.position_ids.to(device),
            self.gather_index.to(device),
            self.parents,
            self.lengths,
            self.runs,
        )


def pack_prefixes(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> PrefixPacking:
    """The trie of the right-padded ``(B, T)`` rows (real tokens where ``attention_mask`` is 1, a prefix of each
    row, as ``collate`` makes them)."""
    if input_ids.dim() != 2 or attention_mask.shape != input_ids.shape:
        raise ValueError(
            f"pack_prefixes needs (B, T) input_ids and attention_mask of the same shape, got "
            f"{tuple(input_ids.shape)} and {tuple(attention_mask.shape)}."
        )
    real = attention_mask.detach().cpu().numpy().astype(np.bool_)
    lengths = real.sum(axis=1).astype(np.int64)
    if not np.array_equal(real, np.arange(real.shape[1])[None, :] < lengths[:, None]):
        raise ValueError("pack_prefixes needs right-padded rows: each row's real tokens must come first.")
    ids = input_ids.detach().cpu().numpy()
    gather = np.zeros(ids.shape, dtype=np.int64)
    children: dict[tuple[int, int], int] = {}  # (parent node or −1, token) -> node
    tokens: list[int] = []
    parents: list[int] = []
    depths: list[int] = []
    runs: list[TrieRun] = []
    for b, length in enumerate(lengths.tolist()):
        node, start, branch = -1, len(tokens), length
        for t, token in enumerate(ids[b, :length].tolist()):
            child = children.get((node, token))
            if child is None:
                branch = min(branch, t)
                child = len(tokens)
                children[(node, token)] = child
                tokens.append(token)
                parents.append(node)
                depths.append(t)
            gather[b, t] = child
            node = child
        if len(tokens) > start:  # once a row leaves the trie every later token is new: one run
            runs.append(TrieRun(start, len(tokens), gather[b, :branch].copy()))
    return PrefixPacking(
        token_ids=torch.tensor([tokens], dtype=torch.int64),
        position_ids=torch.tensor([depths], dtype=torch.int64),
        gather_index=torch.from_numpy(gather),
        parents=np.asarray(parents, dtype=np.int64),
        lengths=lengths,
        runs=tuple(runs),
    )
