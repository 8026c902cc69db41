r"""Advantage attribution over a rollout tree (ARPO §3.2, spec §3 and §6).

Trajectory i of a group has outcome advantage Â_i (see ``advantages``). A token in a segment s lies on the
paths of the trajectories D(s) that descend from s (d = |D(s)| ≥ 1; d > 1 for a prefix shared by branches).

* soft (paper default, all published numbers): every trajectory keeps its own Â_i on all of its tokens, shared
  ones included. The shared tokens have one context, hence one importance ratio, so the summed gradient over
  the d copies is that of the mean advantage: the sharing is accounted for implicitly.
* hard: a token of s gets ``mean_{j ∈ D(s)} Â_j`` in every trajectory through it; tokens after the branch
  point (d = 1) keep their own Â_i.

Both act on generated tokens only: tool-result and prompt tokens have loss mask 0 (and advantage 0 here).

Two views of the same numbers:

* ``attribute`` — trajectory-expanded: per trajectory, ``(T_i,)`` arrays of token ids, loss mask, advantage
  and behaviour logprob; what a padded trainer consumes.
* ``packed_view`` — deduplicated: every segment once, with the advantages of all d trajectories through it.
  A tree-packed trainer forwards a shared prefix once and sums the d per-descendant clipped surrogates, which is
  exactly the expanded loss because each descendant's surrogate is a function of the one shared ratio.

Note: Σ_{j∈D(s)} of the hard advantages equals Σ_{j∈D(s)} Â_j (d × mean), so soft and hard agree on the
*linear* part of the loss; they differ where PPO's clip is active, which depends on each advantage's sign.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from arpo_core.tree import RolloutTree

__all__ = ["PackedSegment", "TokenAdvantages", "attribute", "packed_view", "segment_advantages"]

Attribution = Literal["soft", "hard"]
GroupAdvantages = Mapping[int, float] | ArrayLike
"""Â per trajectory: a mapping ``{trajectory index: Â}`` or values in trajectory-index order."""


@dataclass(frozen=True, slots=True)
class TokenAdvantages:
    """One trajectory's response tokens with what the loss needs, all ``(T,)``."""

    trajectory: int
    token_ids: NDArray[np.int64]
    loss_mask: NDArray[np.int8]
    advantages: NDArray[np.float64]
    behaviour_logprobs: NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class PackedSegment:
    """One segment of the tree, stored once, with every trajectory through it and its advantage."""

    node_id: int
    parent_id: int | None
    token_ids: NDArray[np.int64]
    trainable: bool
    trajectories: tuple[int, ...]
    advantages: NDArray[np.float64]
    """``(d,)``: the advantage each trajectory through this segment puts on its tokens."""

    @property
    def multiplicity(self) -> int:
        return len(self.trajectories)


def _as_mapping(tree: RolloutTree, advantages: GroupAdvantages) -> dict[int, float]:
    indices = [r.index for r in tree.records]
    if isinstance(advantages, Mapping):
        out = {int(k): float(v) for k, v in advantages.items()}
    else:
        values = [float(v) for v in np.asarray(advantages, dtype=np.float64).ravel()]
        if len(values) != len(indices):
            raise ValueError(
                f"group {tree.group_id!r} has {len(indices)} trajectories but {len(values)} advantages were given."
            )
        out = {i: float(v) for i, v in zip(indices, values, strict=True)}
    missing = [i for i in indices if i not in out]
    if missing:
        raise ValueError(f"group {tree.group_id!r}: no advantage for trajectories {missing}.")
    extra = sorted(set(out) - set(indices))
    if extra:
        raise ValueError(
            f"group {tree.group_id!r} has no trajectories {extra}; the advantages given belong to another group."
        )
    return out


def segment_advantages(
    tree: RolloutTree, advantages: GroupAdvantages, mode: Attribution = "soft"
) -> dict[tuple[int, int], float]:
    """The advantage trajectory j puts on the tokens of node s, keyed ``(s, j)``, for every (s, j) on a path."""
    adv = _as_mapping(tree, advantages)
    through = tree.descendants_of()
    out: dict[tuple[int, int], float] = {}
    for node, trajectories in enumerate(through):
        if not trajectories:
            continue
        if mode == "soft":
            for j in trajectories:
                out[(node, j)] = adv[j]
        elif mode == "hard":
            mean = float(np.mean([adv[j] for j in trajectories]))
            for j in trajectories:
                out[(node, j)] = mean
        else:
            raise ValueError(f"attribution mode {mode!r} is not one of 'soft' (paper default) or 'hard'.")
    return out


def attribute(tree: RolloutTree, advantages: GroupAdvantages, mode: Attribution = "soft") -> list[TokenAdvantages]:
    """Per-trajectory token advantages and loss masks (trajectory-expanded view), in trajectory order."""
    per_segment = segment_advantages(tree, advantages, mode)
    out: list[TokenAdvantages] = []
    for traj in tree.trajectories():
        pieces = [
            np.full(len(s.token_ids), per_segment[(s.node_id, traj.index)] if s.trainable else 0.0)
            for s in traj.segments
        ]
        out.append(
            TokenAdvantages(
                trajectory=traj.index,
                token_ids=np.asarray(traj.token_ids, dtype=np.int64),
                loss_mask=traj.loss_mask,
                advantages=np.concatenate(pieces) if pieces else np.zeros(0),
                behaviour_logprobs=traj.behaviour_logprobs,
            )
        )
    return out


def packed_view(tree: RolloutTree, advantages: GroupAdvantages, mode: Attribution = "soft") -> list[PackedSegment]:
    """Every response segment once, with its d trajectories and their advantages, in node order."""
    per_segment = segment_advantages(tree, advantages, mode)
    through = tree.descendants_of()
    out: list[PackedSegment] = []
    for seg in tree.segments[1:]:
        trajectories = through[seg.node_id]
        if not trajectories:
            continue
        values = [per_segment[(seg.node_id, j)] if seg.trainable else 0.0 for j in trajectories]
        out.append(
            PackedSegment(
                node_id=seg.node_id,
                parent_id=seg.parent_id,
                token_ids=np.asarray(seg.token_ids, dtype=np.int64),
                trainable=seg.trainable,
                trajectories=trajectories,
                advantages=np.asarray(values, dtype=np.float64),
            )
        )
    return out
