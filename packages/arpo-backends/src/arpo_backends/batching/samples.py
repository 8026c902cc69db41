r"""From core's rollout trees to trajectory samples: one row per trajectory, prompt included.

After ``attribute(tree, advantages, mode)`` each trajectory i has, over its response tokens, a loss mask (1 on
generated, 0 on tool-result tokens), per-token advantages (soft or hard attribution) and behaviour logprobs (NaN
where unknown). A ``TrajectorySample`` prepends the prompt (loss mask 0, advantage 0, behaviour NaN), so its
``token_ids`` are exactly what the model reads::

    token_ids          = prompt ‖ segment_1 ‖ tool result ‖ segment_2 ‖ …           (L,)
    loss_mask          = 0…0    ‖ 1…1       ‖ 0…0         ‖ 1…1       ‖ …
    advantages         = 0…0    ‖ Â…        ‖ 0…0         ‖ Â…        ‖ …
    behaviour_logprobs = NaN…   ‖ logp_b…   ‖ NaN…        ‖ logp_b…   ‖ …

This is the trajectory-expanded layout: a prefix shared by d branches appears in d rows (the tree-packed
alternative is ``batching.packed``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from arpo_core.algo.attribution import Attribution, GroupAdvantages, TokenAdvantages, attribute
from arpo_core.tree import RolloutTree, SegmentKind

if TYPE_CHECKING:
    from arpo_core.runtime.trainer import TrainBatch

__all__ = ["TrajectorySample", "expand_tree", "expand_trees", "samples_from_tokens", "samples_from_train_batch"]


@dataclass(frozen=True, slots=True, eq=False)
class TrajectorySample:
    """One trajectory as one training row, prompt included; every array is ``(L,)``."""

    group_id: str
    trajectory: int
    token_ids: NDArray[np.int64]
    loss_mask: NDArray[np.bool_]
    advantages: NDArray[np.float64]
    behaviour_logprobs: NDArray[np.float64]
    prompt_length: int
    policy_version: int | None = None
    """Oldest policy version among the trajectory's generated segments (None if none was recorded)."""

    def __post_init__(self) -> None:
        n = len(self.token_ids)
        for name in ("loss_mask", "advantages", "behaviour_logprobs"):
            if len(getattr(self, name)) != n:
                raise ValueError(
                    f"trajectory {self.trajectory} of group {self.group_id!r}: {name} has {len(getattr(self, name))} "
                    f"entries for {n} tokens; they must align."
                )

    @property
    def key(self) -> tuple[str, int]:
        return (self.group_id, self.trajectory)

    @property
    def length(self) -> int:
        return len(self.token_ids)

    @property
    def num_loss_tokens(self) -> int:
        return int(self.loss_mask.sum())


def samples_from_tokens(tree: RolloutTree, tokens: Sequence[TokenAdvantages]) -> list[TrajectorySample]:
    """Samples from already attributed trajectories of ``tree`` (as core's ``TrainBatch.tokens`` holds them)."""
    prompt = np.asarray(tree.prompt.token_ids, dtype=np.int64)
    p = len(prompt)
    out: list[TrajectorySample] = []
    for tok in tokens:
        segments = tree.trajectory(tok.trajectory).segments
        versions = [
            s.policy_version for s in segments if s.kind is SegmentKind.GENERATED and s.policy_version is not None
        ]
        out.append(
            TrajectorySample(
                group_id=tree.group_id,
                trajectory=tok.trajectory,
                token_ids=np.concatenate([prompt, np.asarray(tok.token_ids, dtype=np.int64)]),
                loss_mask=np.concatenate([np.zeros(p, dtype=np.bool_), np.asarray(tok.loss_mask) != 0]),
                advantages=np.concatenate([np.zeros(p), np.asarray(tok.advantages, dtype=np.float64)]),
                behaviour_logprobs=np.concatenate(
                    [np.full(p, np.nan), np.asarray(tok.behaviour_logprobs, dtype=np.float64)]
                ),
                prompt_length=p,
                policy_version=min(versions) if versions else None,
            )
        )
    return out


def expand_tree(tree: RolloutTree, advantages: GroupAdvantages, mode: Attribution = "soft") -> list[TrajectorySample]:
    """One sample per trajectory of ``tree``, in trajectory order, after ``attribute(tree, advantages, mode)``."""
    tree.validate()
    return samples_from_tokens(tree, attribute(tree, advantages, mode))


def expand_trees(
    groups: Iterable[tuple[RolloutTree, GroupAdvantages]], mode: Attribution = "soft"
) -> list[TrajectorySample]:
    """``expand_tree`` over several groups, concatenated in order."""
    return [sample for tree, advantages in groups for sample in expand_tree(tree, advantages, mode)]


def samples_from_train_batch(batch: TrainBatch) -> list[TrajectorySample]:
    """Samples from core's ``TrainBatch`` (trees with their attributed tokens), in tree then trajectory order."""
    if len(batch.trees) != len(batch.tokens):
        raise ValueError(
            f"TrainBatch step {batch.step} has {len(batch.trees)} trees but tokens for {len(batch.tokens)}; "
            "they must pair up."
        )
    return [
        s for tree, tokens in zip(batch.trees, batch.tokens, strict=True) for s in samples_from_tokens(tree, tokens)
    ]
