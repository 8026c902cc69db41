"""Batching from core's rollout trees: masks exactly right on tool-result tokens, padding, token budget, no
trajectory split, the global loss-token count on every micro-batch, prompt groups whole on one rank."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from arpo_backends.batching import (
    TrajectorySample,
    collate,
    expand_tree,
    expand_trees,
    loss_scale,
    make_micro_batches,
    partition_groups,
    plan_micro_batches,
    samples_from_train_batch,
)
from arpo_core.algo.attribution import attribute
from arpo_core.runtime.trainer import TrainBatch
from arpo_core.tree import RolloutTree, SegmentKind

NAN = float("nan")


def hand_tree(group_id: str = "hand") -> RolloutTree:
    """prompt [101 102 103] ─ g1 [11 12] ─ tool [201 202 203] ─ g3 [13 14]   trajectory 0
    │                                                          └ g4 [15]      trajectory 1
    └ g5 [16 17 18 19] (no logprobs from the server)                         trajectory 2"""
    t = RolloutTree(group_id, [101, 102, 103])
    g1 = t.add_segment(0, "generated", [11, 12], logprobs=[-0.5, -0.25], policy_version=3)
    tool = t.add_segment(g1.node_id, SegmentKind.TOOL, [201, 202, 203])
    g3 = t.add_segment(tool.node_id, "generated", [13, 14], logprobs=[-0.1, -0.2], policy_version=4)
    g4 = t.add_segment(tool.node_id, "generated", [15], logprobs=[-1.0], policy_version=5)
    g5 = t.add_segment(0, "generated", [16, 17, 18, 19])
    t.end_trajectory(0, g3.node_id)
    t.end_trajectory(1, g4.node_id, origin="branch", parent=0)
    t.end_trajectory(2, g5.node_id)
    return t


def _same(a: list[float], b: list[float]) -> bool:
    return all((math.isnan(x) and math.isnan(y)) or x == pytest.approx(y) for x, y in zip(a, b, strict=True))


def test_expand_hand_tree_soft_and_hard() -> None:
    soft = expand_tree(hand_tree(), [1.0, -0.5, 0.25], "soft")
    assert [s.trajectory for s in soft] == [0, 1, 2]
    s0, s1, s2 = soft
    assert s0.token_ids.tolist() == [101, 102, 103, 11, 12, 201, 202, 203, 13, 14]
    assert s0.loss_mask.tolist() == [0, 0, 0, 1, 1, 0, 0, 0, 1, 1]
    assert s0.advantages.tolist() == [0, 0, 0, 1, 1, 0, 0, 0, 1, 1]
    assert _same(s0.behaviour_logprobs.tolist(), [NAN] * 3 + [-0.5, -0.25] + [NAN] * 3 + [-0.1, -0.2])
    assert s1.token_ids.tolist() == [101, 102, 103, 11, 12, 201, 202, 203, 15]
    assert s1.loss_mask.tolist() == [0, 0, 0, 1, 1, 0, 0, 0, 1]
    assert s1.advantages.tolist() == [0, 0, 0, -0.5, -0.5, 0, 0, 0, -0.5]
    assert s2.token_ids.tolist() == [101, 102, 103, 16, 17, 18, 19]
    assert all(math.isnan(x) for x in s2.behaviour_logprobs)
    assert (s0.prompt_length, s0.policy_version, s1.policy_version, s2.policy_version) == (3, 3, 3, None)
    assert [s.num_loss_tokens for s in soft] == [4, 3, 4]
    hard = expand_tree(hand_tree(), [1.0, -0.5, 0.25], "hard")
    # the prefix g1 shared by trajectories 0 and 1 gets the mean 0.25; tokens after the branch keep their own.
    assert hard[0].advantages.tolist() == [0, 0, 0, 0.25, 0.25, 0, 0, 0, 1, 1]
    assert hard[1].advantages.tolist() == [0, 0, 0, 0.25, 0.25, 0, 0, 0, -0.5]


def test_collate_pads_right_and_masks_tool_results() -> None:
    mb = collate(expand_tree(hand_tree(), [1.0, -0.5, 0.25]), pad_token_id=7)
    assert mb.input_ids.shape == (3, 10)
    assert mb.input_ids[1].tolist() == [101, 102, 103, 11, 12, 201, 202, 203, 15, 7]
    assert mb.input_ids[2].tolist() == [101, 102, 103, 16, 17, 18, 19, 7, 7, 7]
    assert mb.attention_mask.tolist() == [[1] * 10, [1] * 9 + [0], [1] * 7 + [0] * 3]
    assert mb.position_ids[2].tolist() == [0, 1, 2, 3, 4, 5, 6, 0, 0, 0]
    tool = mb.input_ids >= 200
    assert tool.sum() == 6 and not mb.loss_mask[tool].any()
    assert mb.loss_mask.tolist() == [
        [False] * 3 + [True] * 2 + [False] * 3 + [True] * 2,
        [False] * 3 + [True] * 2 + [False] * 3 + [True] + [False],
        [False] * 3 + [True] * 4 + [False] * 3,
    ]
    assert mb.loss_mask.dtype == torch.bool and mb.advantages.dtype == torch.float32
    assert mb.advantages[1].tolist() == [0, 0, 0, -0.5, -0.5, 0, 0, 0, -0.5, 0]
    assert torch.isnan(mb.behaviour_logprobs[~mb.loss_mask]).all()  # prompt, tool and padding: unknown
    assert torch.isnan(mb.behaviour_logprobs[2]).all()
    assert mb.behaviour_logprobs[1, 8].item() == pytest.approx(-1.0)
    assert (mb.scale.global_tokens, mb.scale.global_sequences, mb.num_loss_tokens) == (11, 3, 11)
    assert mb.keys == (("hand", 0), ("hand", 1), ("hand", 2))
    assert mb.policy_versions == (3, 3, None)
    assert collate(expand_tree(hand_tree(), [0, 0, 0]), pad_to_multiple_of=4).input_ids.shape == (3, 12)


def test_train_batch_gives_the_same_samples() -> None:
    trees = (hand_tree("a"), hand_tree("b"))
    advantages = ([1.0, -0.5, 0.25], [0.0, 2.0, -2.0])
    batch = TrainBatch(
        step=0,
        trees=trees,
        tokens=tuple(tuple(attribute(t, a)) for t, a in zip(trees, advantages, strict=True)),
        policy_versions=(3, 3),
    )
    from_batch = samples_from_train_batch(batch)
    direct = expand_trees(zip(trees, advantages, strict=True))
    assert [s.key for s in from_batch] == [("a", 0), ("a", 1), ("a", 2), ("b", 0), ("b", 1), ("b", 2)]
    for x, y in zip(from_batch, direct, strict=True):
        assert x.token_ids.tolist() == y.token_ids.tolist()
        assert x.advantages.tolist() == y.advantages.tolist()


def test_invalid_tree_is_refused() -> None:
    t = hand_tree()
    t.add_segment(0, "generated", [1])  # a leaf no trajectory ends at
    with pytest.raises(ValueError, match="leaf no trajectory ends at"):
        expand_tree(t, [0.0, 0.0, 0.0])


# --------------------------------------------------------------------------- micro-batches under a token budget
def _samples(lengths: list[int], groups: int = 1) -> list[TrajectorySample]:
    rng = np.random.default_rng(len(lengths))
    out = []
    for i, n in enumerate(lengths):
        mask = rng.random(n) < 0.6
        out.append(
            TrajectorySample(
                group_id=f"g{i % groups}",
                trajectory=i,
                token_ids=rng.integers(0, 100, n),
                loss_mask=mask,
                advantages=np.where(mask, rng.normal(size=n), 0.0),
                behaviour_logprobs=np.where(mask, -rng.random(n), np.nan),
                prompt_length=0,
            )
        )
    return out


@settings(max_examples=80, deadline=None)
@given(
    lengths=st.lists(st.integers(1, 60), min_size=1, max_size=30),
    budget=st.integers(60, 400),
    multiple=st.sampled_from([1, 8]),
    at_least=st.integers(1, 4),
)
def test_plan_respects_budget_and_keeps_every_row_once(
    lengths: list[int], budget: int, multiple: int, at_least: int
) -> None:
    if at_least > len(lengths) or -(-max(lengths) // multiple) * multiple > budget:
        with pytest.raises(ValueError, match=r"min_micro_batches|raise the micro-batch token budget"):
            plan_micro_batches(lengths, budget, min_micro_batches=at_least, pad_to_multiple_of=multiple)
        return
    plan = plan_micro_batches(lengths, budget, min_micro_batches=at_least, pad_to_multiple_of=multiple)
    assert sorted(i for rows in plan for i in rows) == list(range(len(lengths)))
    assert len(plan) >= at_least
    for rows in plan:
        width = -(-max(lengths[i] for i in rows) // multiple) * multiple
        assert len(rows) * width <= budget


def test_micro_batches_never_split_a_trajectory_and_carry_the_global_count() -> None:
    samples = _samples([5, 40, 17, 33, 8, 25, 12, 40, 3, 29])
    total = sum(s.num_loss_tokens for s in samples)
    micro = make_micro_batches(samples, max_tokens=100, pad_token_id=-1)
    assert len(micro) > 1
    by_key = {s.key: s for s in samples}
    seen = []
    for mb in micro:
        assert mb.padded_tokens <= 100
        assert mb.scale == loss_scale(samples) and mb.scale.global_tokens == total
        for row, key in enumerate(mb.keys):
            s = by_key[key]
            n = s.length
            assert mb.input_ids[row, :n].tolist() == s.token_ids.tolist()  # the whole trajectory, in one row
            assert (mb.input_ids[row, n:] == -1).all()
            assert mb.loss_mask[row, :n].tolist() == s.loss_mask.tolist()
            assert not mb.loss_mask[row, n:].any()
            seen.append(key)
    assert sorted(seen) == sorted(by_key)
    assert sum(mb.num_loss_tokens for mb in micro) == total
    with pytest.raises(ValueError, match="raise the micro-batch token budget to at least 40"):
        make_micro_batches(samples, max_tokens=39)


def test_min_micro_batches_aligns_ranks() -> None:
    samples = _samples([10, 10, 10, 10, 10])
    assert len(make_micro_batches(samples, max_tokens=1000)) == 1
    assert len(make_micro_batches(samples, max_tokens=1000, min_micro_batches=3)) == 3
    with pytest.raises(ValueError, match="min_micro_batches=6"):
        make_micro_batches(samples, max_tokens=1000, min_micro_batches=6)


def test_partition_keeps_groups_whole_and_balances_tokens() -> None:
    samples = _samples([25, 20, 15, 10, 25, 20, 15, 10], groups=4)  # group sizes 50, 40, 30, 20
    parts = partition_groups(samples, 2)
    assert sorted(s.key for part in parts for s in part) == sorted(s.key for s in samples)
    for part in parts:
        for s in part:
            assert all(o.group_id != s.group_id for other in parts if other is not part for o in other)
    loads = sorted(sum(s.length for s in part) for part in parts)
    assert loads == [70, 70]  # LPT: 50 → rank 0, 40 → rank 1, 30 → rank 1, 20 → rank 0
    with pytest.raises(ValueError, match="4 prompt groups"):
        partition_groups(samples, 5)
    assert loss_scale(samples, data_parallel_size=2).data_parallel_size == 2
