"""Test doubles shipped with the package, so that tests and users can exercise arpo without a model.

``ScriptedPolicy`` is a seeded toy policy over a small vocabulary. It reproduces the one observation ARPO rests
on — token entropy rises right after a tool result — by drawing flatter top-k distributions for the first
tokens of a segment that follows a ``<result>`` block. It calls a tool with a set probability, answers in the
tag protocol (``<answer>\\boxed{…}</answer>``), and answers correctly more often after using a tool, so that
rewards, advantages and branching have something to act on.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from arpo_core.algo.branching import TrajectorySlot
from arpo_core.simulation import GeneratedSegment
from arpo_core.tree import ToolCallInfo

__all__ = ["ScriptedPolicy", "echo_tool"]


def _rng(*parts: object) -> np.random.Generator:
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return np.random.default_rng(int.from_bytes(digest, "little"))


@dataclass(frozen=True)
class ScriptedPolicy:
    """A deterministic (given ``seed``) toy policy; see the module docstring."""

    vocab_size: int = 512
    seed: int = 0
    top_k: int = 10
    tool_call_prob: float = 0.7
    """Probability that a segment ends with a tool call (while the trajectory has calls left)."""
    max_calls: int = 3
    segment_tokens: tuple[int, int] = (8, 24)
    base_sharpness: float = 6.0
    """Logit scale of ordinary positions: higher is more peaked, i.e. lower entropy."""
    post_tool_sharpness: float = 1.5
    """Logit scale of the first tokens after a tool result: flatter, i.e. higher entropy."""
    post_tool_tokens: int = 20
    gold: str = "42"
    p_correct_with_tool: float = 0.7
    p_correct_without_tool: float = 0.2
    result_marker: int = 1
    """Token id the policy sees as the end of a tool result (``encode`` ends every result with it)."""

    def encode(self, text: str) -> list[int]:
        body = [2 + (ord(c) % (self.vocab_size - 2)) for c in text]
        return [*body, self.result_marker]

    def _position(self, rng: np.random.Generator, sharpness: float) -> tuple[int, float, tuple[float, ...]]:
        """One position: (sampled token, its logprob, top-k logprobs)."""
        logits = rng.standard_normal(self.vocab_size) * sharpness
        logits -= logits.max()
        logp = logits - np.log(np.exp(logits).sum())
        order = np.argsort(-logp)[: self.top_k]
        rank = 0 if rng.random() < 0.8 else min(1, self.top_k - 1)
        return int(order[rank]), float(logp[order[rank]]), tuple(float(x) for x in logp[order])

    def generate(self, context: Sequence[int], max_tokens: int, trajectory: TrajectorySlot) -> GeneratedSegment:
        calls_made = sum(1 for t in context if t == self.result_marker)
        after_tool = bool(context) and context[-1] == self.result_marker
        rng = _rng(self.seed, tuple(context), trajectory.index)
        lo, hi = self.segment_tokens
        n = min(int(rng.integers(lo, hi + 1)), max(max_tokens, 0))
        ids: list[int] = []
        logprobs: list[float] = []
        tops: list[tuple[float, ...]] = []
        for pos in range(n):
            sharp = self.post_tool_sharpness if after_tool and pos < self.post_tool_tokens else self.base_sharpness
            token, logprob, top = self._position(rng, sharp)
            ids.append(token)
            logprobs.append(logprob)
            tops.append(top)
        if n < max(lo, 1) and n == max_tokens:
            return GeneratedSegment(tuple(ids), tuple(logprobs), tuple(tops), "…", None, "length")
        if calls_made < self.max_calls and rng.random() < self.tool_call_prob:
            code = f"print({calls_made} + {int(rng.integers(0, 100))})"
            text = f"<think>step {calls_made}</think><python>{code}</python>"
            return GeneratedSegment(
                tuple(ids), tuple(logprobs), tuple(tops), text, ToolCallInfo("python", {"code": code}), "stop"
            )
        p = self.p_correct_with_tool if calls_made else self.p_correct_without_tool
        answer = self.gold if rng.random() < p else str(int(rng.integers(0, 1000)))
        text = f"<think>done</think><answer>\\boxed{{{answer}}}</answer>"
        return GeneratedSegment(tuple(ids), tuple(logprobs), tuple(tops), text, None, "stop")


def echo_tool(call: ToolCallInfo) -> str:
    """A tool that answers with its arguments, for tests."""
    return f"{call.name}: {dict(call.arguments)}"
