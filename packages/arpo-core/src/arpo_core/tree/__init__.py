"""The rollout tree of one prompt group: ARPO's unit of data from rollout to loss.

A group is a tree. Node 0 holds the prompt. Every other node is a *segment*: a run of tokens either generated
by the policy (trained on, loss mask 1) or inserted by a tool (context only, loss mask 0). A branch copies a
trajectory up to and including a tool result, so in the tree it is simply a second child of that tool-result
node. A trajectory is a root-to-leaf path; each of the M trajectories of a group ends at its own leaf.

Generated segments carry the exact token ids the server sampled, their behaviour logprobs, optional top-k
logprobs (for entropy), and the policy version that produced them; trajectories of an asynchronous run may mix
versions. The tree round-trips through JSON losslessly (floats are written with ``repr`` precision; ``-inf``
and ``nan`` use JSON's common ``-Infinity``/``NaN`` extension), one group per JSONL line.
"""

from __future__ import annotations

from arpo_core.tree.group import FORMAT_VERSION, RolloutTree
from arpo_core.tree.jsonl import read_jsonl, write_jsonl
from arpo_core.tree.segment import Segment, SegmentKind, ToolCallInfo, Trajectory, TrajectoryRecord

__all__ = [
    "FORMAT_VERSION",
    "RolloutTree",
    "Segment",
    "SegmentKind",
    "ToolCallInfo",
    "Trajectory",
    "TrajectoryRecord",
    "read_jsonl",
    "write_jsonl",
]
