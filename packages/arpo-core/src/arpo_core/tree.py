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

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "RolloutTree",
    "Segment",
    "SegmentKind",
    "ToolCallInfo",
    "Trajectory",
    "TrajectoryRecord",
    "read_jsonl",
    "write_jsonl",
]

FORMAT_VERSION = 1


class SegmentKind(str, Enum):
    PROMPT = "prompt"
    GENERATED = "generated"
    TOOL = "tool"


@dataclass(frozen=True, slots=True)
class ToolCallInfo:
    """The tool call a generated segment ended with, as parsed (or the parse error the model was shown)."""

    name: str
    arguments: Mapping[str, Any] = field(default_factory=dict)
    call_id: str | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Segment:
    """One node of the tree. Token-aligned fields have one entry per token id."""

    node_id: int
    parent_id: int | None
    kind: SegmentKind
    token_ids: tuple[int, ...]
    logprobs: tuple[float, ...] | None = None
    """Behaviour logprob of each sampled token (generated segments, when the server returned them)."""
    top_logprobs: tuple[tuple[float, ...], ...] | None = None
    """Top-k logprobs per position (values only), for the entropy estimators."""
    policy_version: int | None = None
    text: str = ""
    tool_calls: tuple[ToolCallInfo, ...] = ()
    """The tool calls this generated segment ended with (several for parallel JSON calls); empty if none."""
    finish_reason: str | None = None
    entropy: float | None = None
    """The entropy window W measured on this segment, when one was."""
    meta: Mapping[str, Any] = field(default_factory=dict)
    """Free-form JSON-serialisable extras (tool latency, server id, ...)."""

    def __post_init__(self) -> None:
        n = len(self.token_ids)
        if self.logprobs is not None and len(self.logprobs) != n:
            raise ValueError(
                f"segment {self.node_id} has {n} token ids but {len(self.logprobs)} logprobs; they must align."
            )
        if self.top_logprobs is not None and len(self.top_logprobs) != n:
            raise ValueError(
                f"segment {self.node_id} has {n} token ids but top-k logprobs for {len(self.top_logprobs)} "
                "positions; they must align."
            )
        if self.kind is not SegmentKind.GENERATED and (self.logprobs is not None or self.top_logprobs is not None):
            raise ValueError(f"segment {self.node_id} is a {self.kind.value} segment and cannot carry logprobs.")

    @property
    def trainable(self) -> bool:
        return self.kind is SegmentKind.GENERATED

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "node_id": self.node_id,
            "parent_id": self.parent_id,
            "kind": self.kind.value,
            "token_ids": list(self.token_ids),
        }
        if self.logprobs is not None:
            out["logprobs"] = list(self.logprobs)
        if self.top_logprobs is not None:
            out["top_logprobs"] = [list(row) for row in self.top_logprobs]
        for name in ("policy_version", "finish_reason", "entropy"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        if self.text:
            out["text"] = self.text
        if self.tool_calls:
            out["tool_calls"] = [
                {"name": c.name, "arguments": dict(c.arguments), "call_id": c.call_id, "error": c.error}
                for c in self.tool_calls
            ]
        if self.meta:
            out["meta"] = dict(self.meta)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Segment:
        return cls(
            node_id=int(data["node_id"]),
            parent_id=None if data.get("parent_id") is None else int(data["parent_id"]),
            kind=SegmentKind(data["kind"]),
            token_ids=tuple(int(t) for t in data["token_ids"]),
            logprobs=None if data.get("logprobs") is None else tuple(float(x) for x in data["logprobs"]),
            top_logprobs=None
            if data.get("top_logprobs") is None
            else tuple(tuple(float(x) for x in row) for row in data["top_logprobs"]),
            policy_version=data.get("policy_version"),
            text=data.get("text", ""),
            tool_calls=tuple(
                ToolCallInfo(c["name"], dict(c.get("arguments") or {}), c.get("call_id"), c.get("error"))
                for c in data.get("tool_calls") or ()
            ),
            finish_reason=data.get("finish_reason"),
            entropy=data.get("entropy"),
            meta=dict(data.get("meta") or {}),
        )


@dataclass(frozen=True, slots=True)
class TrajectoryRecord:
    """How one of the M trajectories started and ended."""

    index: int
    leaf_id: int
    origin: str = "global"
    """``global``, ``branch`` or ``fill`` (see ``algo.branching.Origin``)."""
    root: int | None = None
    """Index of the root trajectory whose ``H_initial`` it used."""
    parent: int | None = None
    branch_step: int = 0
    finish_reason: str | None = None
    reward: float | None = None
    reward_info: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = {
            "index": self.index,
            "leaf_id": self.leaf_id,
            "origin": self.origin,
            "root": self.root,
            "parent": self.parent,
            "branch_step": self.branch_step,
            "finish_reason": self.finish_reason,
            "reward": self.reward,
        }
        if self.reward_info:
            out["reward_info"] = dict(self.reward_info)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrajectoryRecord:
        return cls(
            index=int(data["index"]),
            leaf_id=int(data["leaf_id"]),
            origin=data.get("origin", "global"),
            root=data.get("root"),
            parent=data.get("parent"),
            branch_step=int(data.get("branch_step", 0)),
            finish_reason=data.get("finish_reason"),
            reward=data.get("reward"),
            reward_info=dict(data.get("reward_info") or {}),
        )


@dataclass(frozen=True, slots=True)
class Trajectory:
    """A root-to-leaf path: the response of one trajectory (prompt excluded) and its record."""

    record: TrajectoryRecord
    segments: tuple[Segment, ...]
    """Response segments in order (the prompt node is not included)."""

    @property
    def index(self) -> int:
        return self.record.index

    @property
    def reward(self) -> float | None:
        return self.record.reward

    @property
    def token_ids(self) -> list[int]:
        return [t for s in self.segments for t in s.token_ids]

    @property
    def loss_mask(self) -> NDArray[np.int8]:
        """1 on generated tokens, 0 on tool-result tokens: ``(T,)``."""
        return np.concatenate(
            [np.full(len(s.token_ids), 1 if s.trainable else 0, dtype=np.int8) for s in self.segments]
            or [np.zeros(0, dtype=np.int8)]
        )

    @property
    def behaviour_logprobs(self) -> NDArray[np.float64]:
        """Behaviour logprob per token, NaN where unknown (tool tokens, or a server that gave none): ``(T,)``."""
        parts = [
            np.asarray(s.logprobs, dtype=np.float64) if s.logprobs is not None else np.full(len(s.token_ids), np.nan)
            for s in self.segments
        ]
        return np.concatenate(parts or [np.zeros(0)])

    @property
    def num_tool_calls(self) -> int:
        """Tool results on the path (a call whose result was inserted)."""
        return sum(1 for s in self.segments if s.kind is SegmentKind.TOOL)

    @property
    def text(self) -> str:
        return "".join(s.text for s in self.segments)


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
        for key in ("logprobs",):
            if fields.get(key) is not None:
                fields[key] = tuple(float(x) for x in fields[key])
        if fields.get("top_logprobs") is not None:
            fields["top_logprobs"] = tuple(tuple(float(x) for x in row) for row in fields["top_logprobs"])
        segment = Segment(len(self._segments), parent_id, kind, tuple(int(t) for t in token_ids), **fields)
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


def write_jsonl(path: str | Path, trees: Iterable[RolloutTree], *, append: bool = False) -> int:
    """Write one tree per line; returns how many were written."""
    count = 0
    with Path(path).open("a" if append else "w", encoding="utf-8") as fh:
        for tree in trees:
            fh.write(tree.dumps())
            fh.write("\n")
            count += 1
    return count


def read_jsonl(path: str | Path) -> Iterator[RolloutTree]:
    """Read trees written by ``write_jsonl``; a bad line is reported with its line number."""
    with Path(path).open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                yield RolloutTree.loads(line)
            except (ValueError, KeyError, TypeError) as err:
                raise ValueError(f"{path}:{lineno}: not a rollout tree ({err}).") from err
