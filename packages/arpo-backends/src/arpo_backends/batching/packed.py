r"""The tree-packed layout of one rollout group: every token once, with the trajectories that share it (spec §6).

From core's ``packed_view`` (every response segment once, with its d trajectories and their advantages), one
buffer of N tokens: the prompt, then each segment in node order (a parent always precedes its children)::

    token_ids        (N,)    int64
    position_ids     (N,)    position of the token in its own root-to-leaf sequence (what the expanded row has)
    predictor_index  (N,)    buffer index of the token before it on its path (−1 for the first prompt token):
                             the first token of a segment is predicted from the last token of its parent segment
    loss_mask        (N,)    bool, generated tokens
    advantages       (N, D)  Â of the j-th trajectory through the token (D = the largest sharing in the group)
    descendant_mask  (N, D)  bool, j < d and the token is a loss token
    behaviour_logprobs (N,)  float32, NaN where unknown

``attention_mask()`` is the tree-causal mask (token i sees token j iff j's segment is on i's path and j ≤ i), so
a model run on the buffer gives every token the logits of its expanded row; ``trajectory_positions[i]`` lists the
buffer positions of trajectory i's row, prompt included (``logp_packed[pos]`` is its expanded logprob row).
``packed_arpo_loss`` on this layout equals ``arpo_loss`` on the expanded one; ``expanded_loss_tokens`` is the
normaliser both use.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from arpo_core.algo.attribution import Attribution, GroupAdvantages, packed_view
from arpo_core.tree import RolloutTree

__all__ = ["PackedTree", "pack_tree"]


@dataclass(frozen=True, slots=True, eq=False)
class PackedTree:
    group_id: str
    token_ids: torch.Tensor  # (N,) int64
    position_ids: torch.Tensor  # (N,) int64
    predictor_index: torch.Tensor  # (N,) int64
    node_ids: torch.Tensor  # (N,) int64: the tree node of each token (0: prompt)
    loss_mask: torch.Tensor  # (N,) bool
    advantages: torch.Tensor  # (N, D) float32
    descendant_mask: torch.Tensor  # (N, D) bool
    behaviour_logprobs: torch.Tensor  # (N,) float32
    trajectories: tuple[int, ...]
    """Trajectory indices, in the order of ``trajectory_positions``."""
    trajectory_positions: tuple[torch.Tensor, ...]
    """Per trajectory, ``(L_i,)`` buffer positions of its expanded row (prompt included)."""
    node_parents: tuple[int | None, ...]
    """Parent of every tree node (index = node id)."""

    @property
    def num_tokens(self) -> int:
        return int(self.token_ids.shape[0])

    @property
    def expanded_loss_tokens(self) -> int:
        """Loss tokens of the trajectory-expanded layout: Σ over tokens of their loss multiplicity."""
        return int(self.descendant_mask.sum())

    def attention_mask(self) -> torch.Tensor:
        """``(N, N)`` bool tree-causal mask (O(N²) memory: for small groups and tests; large ones need blocks)."""
        nodes = len(self.node_parents)
        ancestor = np.zeros((nodes, nodes), dtype=np.bool_)  # [n, a]: a is n or an ancestor of n
        for n in range(nodes):
            a: int | None = n
            while a is not None:
                ancestor[n, a] = True
                a = self.node_parents[a]
        node = self.node_ids.numpy()
        causal = np.tril(np.ones((self.num_tokens, self.num_tokens), dtype=np.bool_))
        return torch.from_numpy(ancestor[node[:, None], node[None, :]] & causal)


def pack_tree(tree: RolloutTree, advantages: GroupAdvantages, mode: Attribution = "soft") -> PackedTree:
    """The packed layout of ``tree`` with ``attribute``'s advantages (soft or hard)."""
    tree.validate()
    segments = packed_view(tree, advantages, mode)
    prompt = list(tree.prompt.token_ids)
    width = max((s.multiplicity for s in segments), default=1)
    token_ids: list[int] = list(prompt)
    positions: list[int] = list(range(len(prompt)))
    predictor: list[int] = [i - 1 for i in range(len(prompt))]
    node_ids: list[int] = [0] * len(prompt)
    loss: list[bool] = [False] * len(prompt)
    adv_rows: list[np.ndarray] = [np.zeros((len(prompt), width))]
    desc_rows: list[np.ndarray] = [np.zeros((len(prompt), width), dtype=np.bool_)]
    behaviour: list[float] = [float("nan")] * len(prompt)
    # node id -> (buffer index of its last token, position id after it); the prompt is node 0.
    ends: dict[int, tuple[int, int]] = {0: (len(prompt) - 1, len(prompt))}
    spans: dict[int, range] = {0: range(len(prompt))}
    for seg in segments:
        parent = 0 if seg.parent_id is None else seg.parent_id
        parent_last, start_pos = ends[parent]
        start = len(token_ids)
        length = len(seg.token_ids)
        token_ids.extend(int(t) for t in seg.token_ids)
        positions.extend(range(start_pos, start_pos + length))
        predictor.extend([parent_last, *range(start, start + length - 1)][:length])
        node_ids.extend([seg.node_id] * length)
        loss.extend([seg.trainable] * length)
        row = np.zeros(width)
        row[: seg.multiplicity] = seg.advantages
        adv_rows.append(np.tile(row, (length, 1)))
        desc = np.zeros(width, dtype=np.bool_)
        desc[: seg.multiplicity] = seg.trainable
        desc_rows.append(np.tile(desc, (length, 1)))
        logprobs = tree.segment(seg.node_id).logprobs
        behaviour.extend(logprobs if logprobs is not None else [float("nan")] * length)
        ends[seg.node_id] = (start + length - 1 if length else parent_last, start_pos + length)
        spans[seg.node_id] = range(start, start + length)
    trajectories = tuple(r.index for r in tree.records)
    rows = []
    for index in trajectories:
        path = [0, *(s.node_id for s in tree.trajectory(index).segments)]
        rows.append(torch.tensor([p for node in path for p in spans[node]], dtype=torch.int64))
    return PackedTree(
        group_id=tree.group_id,
        token_ids=torch.tensor(token_ids, dtype=torch.int64),
        position_ids=torch.tensor(positions, dtype=torch.int64),
        predictor_index=torch.tensor(predictor, dtype=torch.int64),
        node_ids=torch.tensor(node_ids, dtype=torch.int64),
        loss_mask=torch.tensor(loss, dtype=torch.bool),
        advantages=torch.from_numpy(np.concatenate(adv_rows).astype(np.float32)),
        descendant_mask=torch.from_numpy(np.concatenate(desc_rows)),
        behaviour_logprobs=torch.tensor(behaviour, dtype=torch.float32),
        trajectories=trajectories,
        trajectory_positions=tuple(rows),
        node_parents=tuple(s.parent_id for s in tree.segments),
    )
