"""The records of a rollout tree: segments (nodes), trajectory records and the root-to-leaf trajectory view."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["Segment", "SegmentKind", "ToolCallInfo", "Trajectory", "TrajectoryRecord"]


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
