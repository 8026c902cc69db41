"""From core's rollout trees to the tensors a trainer needs (trajectory-expanded, padded; or tree-packed).

``expand_tree`` → ``TrajectorySample`` rows (prompt + response, loss mask, advantages, behaviour logprobs);
``collate`` → a padded ``MicroBatch``; ``make_micro_batches`` → micro-batches under a token budget, never splitting
a trajectory, each carrying the mini-batch's ``LossScale``; ``partition_groups`` → prompt groups over ranks;
``pack_tree`` → the tree-packed layout for ``loss.packed_arpo_loss``.
"""

from __future__ import annotations

from arpo_backends.batching.collate import MicroBatch, collate, loss_scale, padded_length
from arpo_backends.batching.packed import PackedTree, pack_tree
from arpo_backends.batching.plan import make_micro_batches, partition_groups, plan_micro_batches
from arpo_backends.batching.samples import (
    TrajectorySample,
    expand_tree,
    expand_trees,
    samples_from_tokens,
    samples_from_train_batch,
)

__all__ = [
    "MicroBatch",
    "PackedTree",
    "TrajectorySample",
    "collate",
    "expand_tree",
    "expand_trees",
    "loss_scale",
    "make_micro_batches",
    "pack_tree",
    "padded_length",
    "partition_groups",
    "plan_micro_batches",
    "samples_from_tokens",
    "samples_from_train_batch",
]
