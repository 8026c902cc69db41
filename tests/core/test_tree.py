"""Rollout tree: building, paths, masks, validation and a lossless JSONL round trip."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from arpo_core.tree import RolloutTree, ToolCallInfo, read_jsonl, write_jsonl
from tests.core.builders import hand_tree


def test_paths_tokens_and_masks() -> None:
    t = hand_tree()
    t.validate()
    traj = t.trajectory(1)
    assert traj.token_ids == [1, 2, 3, 7, 8, 6]
    assert traj.loss_mask.tolist() == [1, 1, 1, 0, 0, 1]
    lp = traj.behaviour_logprobs
    assert lp[:3].tolist() == [-0.1, -0.2, -0.3] and np.isnan(lp[3:5]).all() and lp[5] == -0.6
    assert traj.num_tool_calls == 1 and traj.reward == -0.5
    assert t.children(2) == (3, 4)
    assert [s.node_id for s in t.path(4)] == [0, 1, 2, 4]
    assert t.descendants_of()[1] == (0, 1)  # node 1 is shared by trajectories 0 and 1
    assert t.token_counts() == (3 + 2 + 2 + 1 + 2, 7 + 6 + 2)


def test_jsonl_round_trip_is_lossless(tmp_path: Path) -> None:
    trees = [hand_tree(), RolloutTree("empty", [5])]
    path = tmp_path / "trees.jsonl"
    assert write_jsonl(path, trees) == 2
    back = list(read_jsonl(path))
    assert [b.dumps() for b in back] == [t.dumps() for t in trees]
    again = back[0]
    assert again.segment(1).top_logprobs == ((-0.1, -2.5), (-0.2, -1.9), (-0.3, -math.inf))
    assert again.segment(5).logprobs == (-1.0, -math.pi)  # full float precision
    assert again.segment(1).tool_calls == (ToolCallInfo("python", {"code": "x"}),)
    assert again.records == trees[0].records


def test_building_errors_are_clear() -> None:
    t = RolloutTree("g", [1])
    with pytest.raises(ValueError, match="must follow the generated segment"):
        t.add_segment(0, "tool", [1])
    with pytest.raises(ValueError, match="parent_id=9"):
        t.add_segment(9, "generated", [1])
    with pytest.raises(ValueError, match="2 token ids but 1 logprobs"):
        t.add_segment(0, "generated", [1, 2], logprobs=[-1.0])
    g = t.add_segment(0, "generated", [1])
    with pytest.raises(ValueError, match="cannot carry logprobs"):
        t.add_segment(g.node_id, "tool", [1], logprobs=[-1.0])
    t.end_trajectory(0, g.node_id)
    with pytest.raises(ValueError, match="already ended"):
        t.end_trajectory(0, g.node_id)


def test_validate_catches_dangling_leaf_and_interior_end() -> None:
    t = RolloutTree("g", [1])
    g = t.add_segment(0, "generated", [1])
    t.add_segment(g.node_id, "generated", [2])
    t.end_trajectory(0, g.node_id)
    with pytest.raises(ValueError, match="has children"):
        t.validate()


def test_bad_jsonl_line_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(hand_tree().dumps() + "\n" + '{"format": 99}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2: .*format 99"):
        list(read_jsonl(path))
