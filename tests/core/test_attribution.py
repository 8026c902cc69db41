"""GRPO advantages and soft/hard attribution on a hand-drawn tree."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from arpo_core.algo.advantages import group_advantages, group_advantages_from_config
from arpo_core.algo.attribution import attribute, packed_view
from arpo_core.config import AdvantageConfig
from tests.core.builders import expand, hand_tree


def test_group_advantages_by_hand() -> None:
    # R = (1, 0, 0, 1): mean 0.5; sample std = sqrt(4 * 0.25 / 3) = 0.57735; Â = ±0.5 / 0.57735 = ±0.866025
    a = group_advantages([1, 0, 0, 1])
    assert a == pytest.approx([0.866025, -0.866025, -0.866025, 0.866025], abs=2e-6)
    # population std = 0.5 -> ±1 (minus ε)
    assert group_advantages([1, 0, 0, 1], std_unbiased=False) == pytest.approx([1, -1, -1, 1], abs=1e-5)
    assert group_advantages([1, 0, 0, 1], normalize_by_std=False).tolist() == [0.5, -0.5, -0.5, 0.5]
    # all equal: centred rewards are 0, so advantages are 0, not NaN
    assert group_advantages([0.3, 0.3, 0.3]).tolist() == [0.0, 0.0, 0.0]
    assert group_advantages([5.0]).tolist() == [0.0]
    with pytest.raises(ValueError, match="not finite"):
        group_advantages([1.0, math.nan])
    cfg = AdvantageConfig(std_unbiased=False)
    assert group_advantages_from_config([0, 2], cfg) == pytest.approx([-1, 1], abs=1e-5)


def test_soft_attribution_on_hand_tree() -> None:
    tree = hand_tree()  # trajectories 0 and 1 share segment 1 (3 tokens) and the tool result (2 tokens)
    soft = attribute(tree, [1.0, -0.5, 0.2], "soft")
    assert soft[0].advantages.tolist() == [1, 1, 1, 0, 0, 1, 1]
    assert soft[1].advantages.tolist() == [-0.5, -0.5, -0.5, 0, 0, -0.5]
    assert soft[2].advantages.tolist() == [0.2, 0.2]
    assert soft[1].loss_mask.tolist() == [1, 1, 1, 0, 0, 1]
    assert soft[0].token_ids.tolist() == [1, 2, 3, 7, 8, 4, 5]


def test_hard_attribution_on_hand_tree() -> None:
    tree = hand_tree()
    hard = attribute(tree, {0: 1.0, 1: -0.5, 2: 0.2}, "hard")
    # segment 1 is shared by trajectories 0 and 1: (1.0 + -0.5) / 2 = 0.25; after the branch point each keeps its own
    assert hard[0].advantages.tolist() == [0.25, 0.25, 0.25, 0, 0, 1, 1]
    assert hard[1].advantages.tolist() == [0.25, 0.25, 0.25, 0, 0, -0.5]
    assert hard[2].advantages.tolist() == [0.2, 0.2]


def test_packed_view_on_hand_tree() -> None:
    tree = hand_tree()
    packed = {p.node_id: p for p in packed_view(tree, [1.0, -0.5, 0.2], "soft")}
    assert packed[1].trajectories == (0, 1) and packed[1].advantages.tolist() == [1.0, -0.5]
    assert packed[2].trainable is False and packed[2].advantages.tolist() == [0.0, 0.0]
    assert packed[3].trajectories == (0,) and packed[5].trajectories == (2,)
    hard = {p.node_id: p for p in packed_view(tree, [1.0, -0.5, 0.2], "hard")}
    assert hard[1].advantages.tolist() == [0.25, 0.25]


def test_errors() -> None:
    tree = hand_tree()
    with pytest.raises(ValueError, match="3 trajectories but 2 advantages"):
        attribute(tree, [1.0, 2.0])
    with pytest.raises(ValueError, match="no advantage for trajectories"):
        attribute(tree, {0: 1.0})
    with pytest.raises(ValueError, match="'medium'"):
        attribute(tree, [1.0, 2.0, 3.0], "medium")  # type: ignore[arg-type]


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), mode=st.sampled_from(["soft", "hard"]))
def test_packed_and_expanded_views_agree_on_simulated_trees(seed: int, mode: str) -> None:
    tree = expand(seed=seed).tree
    adv = group_advantages([float(i % 3) for i in range(len(tree))])
    expanded = attribute(tree, adv, mode)  # type: ignore[arg-type]
    packed = packed_view(tree, adv, mode)  # type: ignore[arg-type]
    # every (token, trajectory) pair appears once in each view, with the same advantage
    total_expanded = sum(float(np.sum(t.advantages)) for t in expanded)
    total_packed = sum(len(p.token_ids) * float(np.sum(p.advantages)) for p in packed)
    assert total_packed == pytest.approx(total_expanded)
    assert sum(len(p.token_ids) * p.multiplicity for p in packed) == sum(len(t.token_ids) for t in expanded)
    # hard and soft put the same total advantage on every shared segment (d x mean = sum)
    soft_packed = packed_view(tree, adv, "soft")
    hard_packed = packed_view(tree, adv, "hard")
    for s, h in zip(soft_packed, hard_packed, strict=True):
        assert float(np.sum(s.advantages)) == pytest.approx(float(np.sum(h.advantages)))
