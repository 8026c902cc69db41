"""Test doubles shipped with the package, so that tests and users can exercise arpo without a model.

``ScriptedPolicy`` is a seeded toy policy over a small vocabulary. It reproduces the one observation ARPO rests
on — token entropy rises right after a tool result — by drawing flatter top-k distributions for the first
tokens of a segment that follows a ``<result>`` block. It calls a tool with a set probability, answers in the
tag protocol (``<answer>\\boxed{…}</answer>``), and answers correctly more often after using a tool, so that
rewards, advantages and branching have something to act on.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from arpo_core.algo.branching import TrajectorySlot
from arpo_core.runtime.inference import Completion, SamplingParams
from arpo_core.runtime.tools import ToolResult, ToolSpec
from arpo_core.simulation import GeneratedSegment
from arpo_core.tree import ToolCallInfo

__all__ = ["FakeToolClient", "PolicyInferenceClient", "PolicyTokenizer", "ScriptedPolicy", "echo_tool"]


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
    base_top1: tuple[float, float] = (0.85, 0.98)
    """Range of the top-1 probability at ordinary positions (peaked: low entropy)."""
    post_tool_top1: tuple[float, float] = (0.3, 0.6)
    """Range of the top-1 probability for the first tokens after a tool result (flatter: higher entropy)."""
    tail_mass: float = 0.1
    """Share of the non-top-1 mass left outside the top k (what the truncated estimator cannot see)."""
    post_tool_tokens: int = 20
    gold: str = "42"
    p_correct_with_tool: float = 0.7
    p_correct_without_tool: float = 0.2
    result_marker: int = 1
    """Token id the policy sees as the end of a tool result (``encode`` ends every result with it)."""

    def encode(self, text: str) -> list[int]:
        body = [2 + (ord(c) % (self.vocab_size - 2)) for c in text]
        return [*body, self.result_marker]

    def _position(self, rng: np.random.Generator, top1: tuple[float, float]) -> tuple[int, float, tuple[float, ...]]:
        """One position: (sampled token, its logprob, top-k logprobs in decreasing order)."""
        q = float(rng.uniform(*top1))
        rest = (1.0 - q) * (1.0 - self.tail_mass) * rng.dirichlet(np.ones(max(self.top_k - 1, 1)))
        probs = np.sort(np.concatenate([[q], rest[: self.top_k - 1]]))[::-1]
        ids = rng.choice(self.vocab_size, size=probs.size, replace=False)
        rank = int(rng.choice(probs.size, p=probs / probs.sum()))
        logp = np.log(probs)
        return int(ids[rank]), float(logp[rank]), tuple(float(x) for x in logp)

    def generate(
        self, context: Sequence[int], max_tokens: int, trajectory: TrajectorySlot, seed: int
    ) -> GeneratedSegment:
        """``SyncPolicy``: the trajectory is not needed, the request seed keys the draws."""
        return self.sample(context, max_tokens, seed)

    def sample(self, context: Sequence[int], max_tokens: int, seed: int | None) -> GeneratedSegment:
        """One segment after ``context``, a deterministic function of (policy seed, context, request seed)."""
        calls_made = sum(1 for t in context if t == self.result_marker)
        after_tool = bool(context) and context[-1] == self.result_marker
        rng = _rng(self.seed, tuple(context), seed)
        lo, hi = self.segment_tokens
        n = min(int(rng.integers(lo, hi + 1)), max(max_tokens, 0))
        ids: list[int] = []
        logprobs: list[float] = []
        tops: list[tuple[float, ...]] = []
        for pos in range(n):
            top1 = self.post_tool_top1 if after_tool and pos < self.post_tool_tokens else self.base_top1
            token, logprob, top = self._position(rng, top1)
            ids.append(token)
            logprobs.append(logprob)
            tops.append(top)
        if n < max(lo, 1) and n == max_tokens:
            return GeneratedSegment(tuple(ids), tuple(logprobs), tuple(tops), "…", (), "length")
        if calls_made < self.max_calls and rng.random() < self.tool_call_prob:
            code = f"print({calls_made} + {int(rng.integers(0, 100))})"
            text = f"<think>step {calls_made}</think><python>{code}</python>"
            return GeneratedSegment(
                tuple(ids), tuple(logprobs), tuple(tops), text, (ToolCallInfo("python", {"code": code}),), "stop"
            )
        p = self.p_correct_with_tool if calls_made else self.p_correct_without_tool
        answer = self.gold if rng.random() < p else str(int(rng.integers(0, 1000)))
        text = f"<think>done</think><answer>\\boxed{{{answer}}}</answer>"
        return GeneratedSegment(tuple(ids), tuple(logprobs), tuple(tops), text, (), "stop")


def echo_tool(call: ToolCallInfo) -> str:
    """A tool that answers with its arguments, for tests."""
    return f"{call.name}: {dict(call.arguments)}"


ToolHandler = Callable[[Mapping[str, Any]], "str | Awaitable[str]"]


@dataclass
class FakeToolClient:
    """An in-memory ``ToolClient``: each tool is a plain or async function of its arguments returning text.

    A handler's exception becomes an error result, as a real client turns tool failures into text; ``calls``
    records every call in order, for assertions.
    """

    handlers: dict[str, ToolHandler]
    descriptions: dict[str, str] = field(default_factory=dict)
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    async def list_tools(self) -> list[ToolSpec]:
        return [ToolSpec(name, self.descriptions.get(name, name)) for name in self.handlers]

    async def call_tool(self, name: str, arguments: Mapping[str, Any], *, timeout: float | None = None) -> ToolResult:
        self.calls.append((name, dict(arguments)))
        start = time.perf_counter()
        handler = self.handlers.get(name)
        if handler is None:
            known = ", ".join(sorted(self.handlers))
            return ToolResult(f"Unknown tool {name!r}; available tools: {known}.", is_error=True)
        try:
            out = handler(arguments)
            text = await out if not isinstance(out, str) else out
        except Exception as err:  # the fake mirrors the contract: a tool's failure is text, not an exception
            return ToolResult(f"{type(err).__name__}: {err}", is_error=True, latency_s=time.perf_counter() - start)
        return ToolResult(text, latency_s=time.perf_counter() - start)


@dataclass
class PolicyInferenceClient:
    """An ``InferenceClient`` over a ``ScriptedPolicy``: no server, optional fixed latency per request.

    The request's seed keys the policy's draws, so results do not depend on the order requests are served in.
    ``fail_after`` makes every request after that many raise, to test the engine's server failover.
    """

    policy: ScriptedPolicy
    latency_s: float = 0.0
    name: str = "scripted"
    fail_after: int | None = None
    requests: int = 0
    in_flight: int = 0
    peak_in_flight: int = 0

    async def complete(self, prompt_token_ids: Sequence[int], params: SamplingParams) -> Completion:
        import anyio

        from arpo_core.runtime.openai_client import ServerUnavailableError

        self.requests += 1
        if self.fail_after is not None and self.requests > self.fail_after:
            raise ServerUnavailableError(f"server {self.name!r} is down (test double)")
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            if self.latency_s:
                await anyio.sleep(self.latency_s)
            seg = self.policy.sample(prompt_token_ids, params.max_tokens, params.seed)
        finally:
            self.in_flight -= 1
        stop = next((s for s in params.stop if seg.text.endswith(s)), None)
        return Completion(seg.token_ids, seg.text, seg.logprobs, seg.top_logprobs, seg.finish_reason, stop)


@dataclass(frozen=True)
class PolicyTokenizer:
    """The ``Tokenizer`` of a ``ScriptedPolicy`` (tool results end with its result marker)."""

    policy: ScriptedPolicy

    async def encode(self, text: str) -> list[int]:
        return self.policy.encode(text)

    async def decode(self, token_ids: Sequence[int]) -> str:
        return "".join(chr(t) for t in token_ids)
