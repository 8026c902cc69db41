"""Asynchronous expansion of one prompt group into an ARPO rollout tree.

The same algorithm as ``arpo_core.simulation.expand_group`` — that synchronous version is its specification and
a test checks both give the same tree — with every trajectory of the group running as its own task:

    generate segment (token ids in, sampled ids out)
      → first segment of a root: record H_initial
      → segment right after tool result t: ΔH_t from *this* segment → decide → branches start at once,
        restarting from the post-result prefix (no lag), and share the group's server (its prefix cache)
      → parse the tool call (tag or JSON protocol); a malformed call becomes an error result the model sees
      → calls < call_limit: run the tool(s), append the result tokens (loss mask 0), continue
        calls = call_limit: end ("call_limit");  no call: end (answer, EOS, max tokens)
    when nothing left can branch and the group has fewer than M, fill with fresh global samples.

AEPO entropy pre-monitoring (``algo.branching.dynamic_global_samples``; rule in ``algo.aepo``): the group starts
with its first global trajectory alone. ``H_root`` is the window of that trajectory's first segment (its
``H_initial``); ``H_tool`` is the window of the segment it generates right after its first tool result. As soon as
that segment is measured — before its branch decision — N is fixed and the other N − 1 global trajectories are
launched; if the trajectory ends first (no tool call, call limit, token budget), N is the configured
``global_samples``. The N used is ``GroupResult.global_samples`` (and ``tree.metadata["global_samples"]``).
Pre-monitoring needs the server's top-k logprobs; without them it is an error naming the option.

The scheduler and monitor are synchronous and touched only between awaits of one event loop, so they need no
lock. Limits (requests, tool calls) are the engine's ``CapacityLimiter``s, shared by all groups.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.abc

from arpo_core.algo.branching import BranchDecision, BranchScheduler, TrajectorySlot, request_seed
from arpo_core.algo.entropy_monitor import EntropyMonitor
from arpo_core.config import RolloutConfig
from arpo_core.runtime.inference import InferenceClient, SamplingParams, Tokenizer
from arpo_core.runtime.tools import ToolClient
from arpo_core.simulation import end_reason, end_trajectory, observe_segment, truncate_result
from arpo_core.toolcalls import ToolCallParser
from arpo_core.tree import RolloutTree, SegmentKind, ToolCallInfo

__all__ = ["GroupResult", "Limits", "expand_group_async", "first_leaf"]


@dataclass(frozen=True)
class Limits:
    """Capacity shared by every group of an engine."""

    requests: anyio.CapacityLimiter
    tools: anyio.CapacityLimiter

    @classmethod
    def from_config(cls, config: RolloutConfig) -> Limits:
        return cls(
            anyio.CapacityLimiter(config.max_inflight_requests), anyio.CapacityLimiter(config.max_inflight_tools)
        )


@dataclass
class GroupResult:
    """A finished group and what happened while expanding it."""

    tree: RolloutTree
    decisions: list[BranchDecision] = field(default_factory=list)
    tool_calls: int = 0
    requests: int = 0
    server: str = ""
    global_samples: int = 0
    """N: the trajectories started from the bare prompt before any fill (sized per group by AEPO pre-monitoring
    when ``dynamic_global_samples`` is on, else the configured one)."""


async def expand_group_async(
    group_id: str,
    prompt_token_ids: Sequence[int],
    *,
    client: InferenceClient,
    tokenizer: Tokenizer,
    tools: ToolClient,
    parser: ToolCallParser,
    scheduler: BranchScheduler,
    monitor: EntropyMonitor,
    config: RolloutConfig,
    limits: Limits,
    top_logprobs: int | None = 10,
    metadata: Mapping[str, Any] | None = None,
) -> GroupResult:
    """Expand one group; returns when all M trajectories have ended. Inference errors propagate (the engine
    retries the whole group elsewhere); tool failures never do (they are results the model sees)."""
    tree = RolloutTree(group_id, prompt_token_ids, metadata=metadata)
    out = GroupResult(tree, server=client.name)
    budget = config.max_response_tokens
    call_limit = scheduler.config.call_limit
    premonitor = scheduler.needs_premonitoring

    prompt = list(tree.prompt.token_ids)

    async def run(
        slot: TrajectorySlot, node: int, context: list[int], calls: int, used: int, tg: anyio.abc.TaskGroup
    ) -> None:
        """One trajectory. ``context`` is this task's own list of the ids up to ``node`` (prompt included),
        extended in place as segments arrive; a branch gets a copy of its parent's at the branch point."""
        first = True
        seed = request_seed(scheduler.seed, slot.lineage) if config.seeded_requests else None
        while True:
            max_tokens = budget - used
            if config.max_segment_tokens is not None:
                max_tokens = min(max_tokens, config.max_segment_tokens)
            params = SamplingParams(
                max_tokens=max_tokens,
                temperature=config.temperature,
                top_p=config.top_p,
                stop=parser.stop_sequences,
                logprobs=top_logprobs,
                seed=seed,
            )
            async with _slot(limits.requests):
                completion = await client.complete(context, params)
            out.requests += 1
            turn = parser.parse(
                completion.text, stop=completion.stop_reason if isinstance(completion.stop_reason, str) else None
            )
            calls_info = tuple(ToolCallInfo(c.name, dict(c.arguments), c.call_id) for c in turn.calls) + tuple(
                ToolCallInfo("", {}, None, e.message) for e in turn.errors
            )
            seg = tree.add_segment(
                node,
                SegmentKind.GENERATED,
                completion.token_ids,
                logprobs=completion.logprobs,
                top_logprobs=completion.top_logprobs,
                policy_version=completion.policy_version,
                text=completion.text,
                tool_calls=calls_info,
                finish_reason=completion.finish_reason,
                entropy=None if completion.top_logprobs is None else monitor.measure(completion.top_logprobs),
            )
            used += len(completion.token_ids)
            if scheduler.awaiting_size:  # only the pre-monitoring trajectory runs until N is known
                window = _premonitor_window(seg.entropy)
                if not first:  # the segment right after its first tool result: H_tool, so N is known now
                    _size_globals(tg, [window])
            decision = observe_segment(scheduler, monitor, slot, calls, first, seg.entropy)
            if decision is not None:
                out.decisions.append(decision)
                if decision.children:
                    # `context` still ends at tool result `calls`: this segment is added below, after the copies
                    for child in decision.children:
                        tg.start_soon(run, child, node, list(context), calls, used - len(completion.token_ids), tg)
                _launch_fills(tg)
            first = False
            context.extend(completion.token_ids)
            reason = end_reason(turn.has_calls, completion.finish_reason, calls, call_limit, used, budget)
            if reason is not None:
                _end(slot, seg.node_id, reason, tg)
                return
            texts = await _run_tools(turn, tools, limits, config.tool_timeout)
            out.tool_calls += len(turn.calls)
            result_text = "".join(parser.format_result(t) for t in texts)
            ids, meta = truncate_result(await tokenizer.encode(result_text), budget - used)
            tool_seg = tree.add_segment(seg.node_id, SegmentKind.TOOL, ids, text=result_text, meta=meta)
            calls += 1
            used += len(ids)
            context.extend(ids)
            node = tool_seg.node_id
            if used >= budget:
                _end(slot, node, "length", tg)
                return

    def _end(slot: TrajectorySlot, leaf: int, reason: str, tg: anyio.abc.TaskGroup) -> None:
        if scheduler.awaiting_size:  # the pre-monitoring trajectory ends without a post-tool window
            _size_globals(tg, [])
        end_trajectory(tree, scheduler, slot, leaf, reason)
        _launch_fills(tg)

    def _size_globals(tg: anyio.abc.TaskGroup, tool_windows: list[float]) -> None:
        for other in scheduler.size_global_samples(monitor.initial(0), tool_windows):
            tg.start_soon(run, other, 0, list(prompt), 0, 0, tg)

    def _launch_fills(tg: anyio.abc.TaskGroup) -> None:
        for fill in scheduler.fill():
            tg.start_soon(run, fill, 0, list(prompt), 0, 0, tg)

    try:
        async with anyio.create_task_group() as tg:
            for slot in (scheduler.start_premonitored(),) if premonitor else scheduler.start():
                tg.start_soon(run, slot, 0, list(prompt), 0, 0, tg)
    except Exception as err:  # one trajectory failed, the others were cancelled: raise its error itself
        raise first_leaf(err) from None
    tree.validate()
    out.global_samples = scheduler.n_global
    if premonitor:
        tree.metadata["global_samples"] = scheduler.n_global
    return out


def _premonitor_window(entropy: float | None) -> float:
    if entropy is None:
        raise ValueError(
            "algo.branching.dynamic_global_samples=True sizes N from the entropy of the group's first trajectory, "
            "but the server returned no top-k logprobs; request them (algo.entropy.top_logprobs ≥ 1) or turn "
            "dynamic_global_samples off."
        )
    return entropy


def first_leaf(err: BaseException) -> BaseException:
    """The first non-group exception inside (possibly nested) exception groups."""
    inner = getattr(err, "exceptions", None)
    while isinstance(inner, (list, tuple)) and inner:
        err = inner[0]
        inner = getattr(err, "exceptions", None)
    return err


async def _run_tools(turn: Any, tools: ToolClient, limits: Limits, timeout: float) -> list[str]:
    """Each call's result text (calls of one turn run concurrently), then each parse error's message."""
    results: list[str] = [""] * len(turn.calls)

    async def one(i: int, name: str, arguments: Mapping[str, Any]) -> None:
        async with _slot(limits.tools):
            result = await tools.call_tool(name, arguments, timeout=timeout)
        results[i] = result.text

    if len(turn.calls) == 1:  # the common case (tag protocol): no task group needed
        await one(0, turn.calls[0].name, turn.calls[0].arguments)
    elif turn.calls:
        async with anyio.create_task_group() as tg:
            for i, call in enumerate(turn.calls):
                tg.start_soon(one, i, call.name, call.arguments)
    return results + [e.message for e in turn.errors]


@asynccontextmanager
async def _slot(limiter: anyio.CapacityLimiter) -> AsyncIterator[None]:
    """Hold one token of ``limiter``. Free tokens are taken without a checkpoint (the request that follows is
    one), which halves the engine's per-turn CPU at a thousand trajectories in flight."""
    try:
        limiter.acquire_nowait()
    except anyio.WouldBlock:
        await limiter.acquire()
    try:
        yield
    finally:
        limiter.release()
