"""``RolloutTree``: the tree of one prompt group — building, reading, validating and (de)serialising it."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from arpo_core.tree.segment import Segment, SegmentKind, Trajectory, TrajectoryRecord

__all__ = ["FORMAT_VERSION", "RolloutTree"]

FORMAT_VERSION = 1
"""Version of the JSON layout written by ``RolloutTree.to_dict``; loading another version is refused."""


class RolloutTree:
    """The rollout tree of one prompt group. Built by the runtime, read by attribution and the trainer."""

    def __init__(
        self,
        group_id: str,
        prompt_token_ids: Sequence[int],
        *,
        prompt_text: str = "",
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        self.group_id = group_id
        self.metadata: dict[str, Any] = dict(metadata or {})
        self._segments: list[Segment] = [
            Segment(0, None, SegmentKind.PROMPT, tuple(int(t) for t in prompt_token_ids), text=prompt_text)
        ]
        self._children: list[list[int]] = [[]]
        self._records: dict[int, TrajectoryRecord] = {}

    # ------------------------------------------------------------------ building
    def add_segment(
        self,
        parent_id: int,
        kind: SegmentKind | str,
        token_ids: Sequence[int],
        **fields: Any,
    ) -> Segment:
        """Append a segment under ``parent_id`` and return it (its ``node_id`` is the next free id)."""
        kind = SegmentKind(kind)
        if kind is SegmentKind.PROMPT:
            raise ValueError("a tree has exactly one prompt segment, node 0; add generated or tool segments.")
        if not 0 <= parent_id < len(self._segments):
            raise ValueError(f"parent_id={parent_id} is not a node of group {self.group_id!r}.")
        if kind is SegmentKind.TOOL and self._segments[parent_id].kind is not SegmentKind.GENERATED:
            raise ValueError(
                f"a tool result must follow the generated segment that called the tool; node {parent_id} is a "
                f"{self._segments[parent_id].kind.value} segment."
            )
        logprobs = fields.get("logprobs")
        if logprobs is not None and not isinstance(logprobs, tuple):
            fields["logprobs"] = tuple(float(x) for x in logprobs)
        top = fields.get("top_logprobs")
        if top is not None and not (isinstance(top, tuple) and all(isinstance(row, tuple) for row in top)):
            fields["top_logprobs"] = tuple(tuple(float(x) for x in row) for row in top)
        if not isinstance(token_ids, tuple):
            token_ids = tuple(int(t) for t in token_ids)
        segment = Segment(len(self._segments), parent_id, kind, token_ids, **fields)
        self._segments.append(segment)
        self._children.append([])
        self._children[parent_id].append(segment.node_id)
        return segment

    def end_trajectory(self, index: int, leaf_id: int, **fields: Any) -> TrajectoryRecord:
        """Record that trajectory ``index`` ended at node ``leaf_id``."""
        if index in self._records:
            raise ValueError(f"trajectory {index} of group {self.group_id!r} has already ended.")
        if not 0 < leaf_id < len(self._segments):
            raise ValueError(f"leaf_id={leaf_id} is not a response node of group {self.group_id!r}.")
        record = TrajectoryRecord(index, leaf_id, **fields)
        self._records[index] = record
        return record

    def set_reward(self, index: int, reward: float, info: Mapping[str, Any] | None = None) -> None:
        record = self._records[index]
        self._records[index] = replace(record, reward=float(reward), reward_info=dict(info or record.reward_info))

    # ------------------------------------------------------------------ reading
    @property
    def segments(self) -> tuple[Segment, ...]:
        return tuple(self._segments)

    @property
    def prompt(self) -> Segment:
        return self._segments[0]

    def segment(self, node_id: int) -> Segment:
        return self._segments[node_id]

    def children(self, node_id: int) -> tuple[int, ...]:
        return tuple(self._children[node_id])

    def path(self, node_id: int) -> tuple[Segment, ...]:
        """Segments from the prompt (included) down to ``node_id``."""
        out: list[Segment] = []
        current: int | None = node_id
        while current is not None:
            seg = self._segments[current]
            out.append(seg)
            current = seg.parent_id
        return tuple(reversed(out))

    @property
    def records(self) -> tuple[TrajectoryRecord, ...]:
        return tuple(self._records[i] for i in sorted(self._records))

    def trajectory(self, index: int) -> Trajectory:
        record = self._records[index]
        return Trajectory(record, self.path(record.leaf_id)[1:])

    def trajectories(self) -> list[Trajectory]:
        return [self.trajectory(i) for i in sorted(self._records)]

    def __len__(self) -> int:
        """Number of ended trajectories."""
        return len(self._records)

    def descendants_of(self) -> list[tuple[int, ...]]:
        """For every node, the indices of the ended trajectories whose path goes through it."""
        through: list[list[int]] = [[] for _ in self._segments]
        for record in self.records:
            node: int | None = record.leaf_id
            while node is not None:
                through[node].append(record.index)
                node = self._segments[node].parent_id
        return [tuple(x) for x in through]

    def validate(self) -> None:
        """Check the invariants the trainer relies on; raise ``ValueError`` naming the first broken one."""
        leaves = [r.leaf_id for r in self.records]
        if len(set(leaves)) != len(leaves):
            raise ValueError(f"group {self.group_id!r}: two trajectories end at the same node.")
        for r in self.records:
            if self._children[r.leaf_id]:
                raise ValueError(
                    f"group {self.group_id!r}: trajectory {r.index} ends at node {r.leaf_id}, which has children."
                )
        ended = set(leaves)
        for seg in self._segments[1:]:
            if not self._children[seg.node_id] and seg.node_id not in ended:
                raise ValueError(f"group {self.group_id!r}: node {seg.node_id} is a leaf no trajectory ends at.")

    def token_counts(self) -> tuple[int, int]:
        """(response tokens stored once per node, response tokens summed over trajectories)."""
        unique = sum(len(s.token_ids) for s in self._segments[1:])
        expanded = sum(len(t.token_ids) for t in self.trajectories())
        return unique, expanded

    # ------------------------------------------------------------------ serialisation
    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT_VERSION,
            "group_id": self.group_id,
            "metadata": self.metadata,
            "segments": [s.to_dict() for s in self._segments],
            "trajectories": [r.to_dict() for r in self.records],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RolloutTree:
        if data.get("format") != FORMAT_VERSION:
            raise ValueError(
                f"rollout tree format {data.get('format')!r} is not supported (expected {FORMAT_VERSION}); "
                "re-export the trees with this arpo version."
            )
        segments = [Segment.from_dict(s) for s in data["segments"]]
        if not segments or segments[0].kind is not SegmentKind.PROMPT:
            raise ValueError(f"group {data.get('group_id')!r}: the first segment must be the prompt.")
        tree = cls(
            data["group_id"],
            segments[0].token_ids,
            prompt_text=segments[0].text,
            metadata=data.get("metadata"),
        )
        for seg in segments[1:]:
            if seg.node_id != len(tree._segments):
                raise ValueError(f"group {tree.group_id!r}: segment ids must be 1, 2, ... in order.")
            if seg.parent_id is None or not 0 <= seg.parent_id < seg.node_id:
                raise ValueError(
                    f"group {tree.group_id!r}: segment {seg.node_id} has parent {seg.parent_id}; a parent must be "
                    "an earlier node."
                )
            if seg.kind is SegmentKind.PROMPT:
                raise ValueError(f"group {tree.group_id!r}: segment {seg.node_id} is a second prompt.")
            if seg.kind is SegmentKind.TOOL and tree._segments[seg.parent_id].kind is not SegmentKind.GENERATED:
                raise ValueError(
                    f"group {tree.group_id!r}: tool segment {seg.node_id} has parent {seg.parent_id}, which is "
                    "not a generated segment."
                )
            tree._segments.append(seg)
            tree._children.append([])
            tree._children[seg.parent_id].append(seg.node_id)
        for r in data.get("trajectories", []):
            record = TrajectoryRecord.from_dict(r)
            if record.index in tree._records:
                raise ValueError(f"group {tree.group_id!r}: trajectory {record.index} appears twice.")
            if not 0 < record.leaf_id < len(tree._segments):
                raise ValueError(
                    f"group {tree.group_id!r}: trajectory {record.index} ends at node {record.leaf_id}, which is "
                    "not a response node."
                )
            tree._records[record.index] = record
        return tree

    def dumps(self) -> str:
        # ASCII escapes keep any Python string, lone surrogates included, writable as UTF-8 and lossless.
        return json.dumps(self.to_dict(), ensure_ascii=True, separators=(",", ":"))

    @classmethod
    def loads(cls, line: str) -> RolloutTree:
        return cls.from_dict(json.loads(line))
