"""Synchronous expansion of one ARPO group: the executable specification of the rollout algorithm.

``expand_group`` drives a *synchronous* policy and tool through the ``BranchScheduler`` and ``EntropyMonitor``
and returns the ``RolloutTree``. It is deliberately simple — one trajectory at a time, no concurrency — so that
it can serve as the reference the asynchronous ``RolloutEngine`` is checked against (same seed, deterministic
policy ⇒ same tree shape and decisions), and so that the algorithm can be exercised without any server.

Order of events for one trajectory (spec §2, without the reference code's one-step lag)::

    generate segment → (first segment of a root: record H_initial)
                     → (segment right after tool result t: ΔH_t from *this* segment → decide → enqueue branches
                        that restart under the tool-result node t)
                     → tool call?  calls < call_limit: run tool, append result (loss mask 0), continue
                                   calls = call_limit: end ("call_limit")
                     → no call: end (answer / EOS / length)
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from arpo_core.algo.branching import BranchDecision, BranchScheduler, Origin, TrajectorySlot, request_seed
from arpo_core.algo.entropy_monitor import EntropyMonitor, decision_window
from arpo_core.tree import RolloutTree, SegmentKind, ToolCallInfo

__all__ = ["GeneratedSegment", "GroupExpansion", "SyncPolicy", "expand_group"]


@dataclass(frozen=True, slots=True)
class GeneratedSegment:
    """What a policy returns for one generation call: tokens up to a tool call, an answer, EOS or the limit."""

    token_ids: tuple[int, ...]
    logprobs: tuple[float, ...] | None = None
    top_logprobs: tuple[tuple[float, ...], ...] | None = None
    text: str = ""
    tool_calls: tuple[ToolCallInfo, ...] = ()
    """Calls the segment ended with; several (parallel JSON calls) share one tool step and one result segment."""
    finish_reason: str = "stop"


class SyncPolicy(Protocol):
    """A synchronous stand-in for an inference server (tests, demos, the reference expansion)."""

    def generate(
        self, context: Sequence[int], max_tokens: int, trajectory: TrajectorySlot, seed: int
    ) -> GeneratedSegment: ...

    def encode(self, text: str) -> list[int]: ...


ToolRunner = Callable[[ToolCallInfo], str]


@dataclass(slots=True)
class GroupExpansion:
    """The result of expanding one group."""

    tree: RolloutTree
    scheduler: BranchScheduler
    monitor: EntropyMonitor
    decisions: list[BranchDecision] = field(default_factory=list)
    tool_calls: int = 0
    """Tool calls actually executed (a shared prefix's calls count once)."""


def expand_group(
    group_id: str,
    prompt_token_ids: Sequence[int],
    policy: SyncPolicy,
    tools: ToolRunner,
    scheduler: BranchScheduler,
    monitor: EntropyMonitor,
    *,
    max_response_tokens: int = 4096,
    format_result: Callable[[str], str] = lambda text: f" <result>\n{text}\n</result>",
    metadata: dict[str, object] | None = None,
) -> GroupExpansion:
    """Expand one prompt group into a tree of exactly M trajectories."""
    tree = RolloutTree(group_id, prompt_token_ids, metadata=metadata)
    out = GroupExpansion(tree, scheduler, monitor)
    calls_limit = scheduler.config.call_limit
    # (slot, node the next segment hangs under, tool calls already on the path, response tokens on the path)
    queue: deque[tuple[TrajectorySlot, int, int, int]] = deque((s, 0, 0, 0) for s in scheduler.start())

    while True:
        if not queue:
            queue.extend((s, 0, 0, 0) for s in scheduler.fill())
            if not queue:
                break
        slot, node, calls, used = queue.popleft()
        is_root = slot.origin is not Origin.BRANCH
        first = True
        while True:
            context = [t for seg in tree.path(node) for t in seg.token_ids]
            gen = policy.generate(context, max_response_tokens - used, slot, request_seed(scheduler.seed, slot.lineage))
            seg = tree.add_segment(
                node,
                SegmentKind.GENERATED,
                gen.token_ids,
                logprobs=gen.logprobs,
                top_logprobs=gen.top_logprobs,
                text=gen.text,
                tool_calls=gen.tool_calls,
                finish_reason=gen.finish_reason,
                entropy=None if gen.top_logprobs is None else monitor.measure(gen.top_logprobs),
            )
            used += len(gen.token_ids)
            window = decision_window(seg.entropy, scheduler.branch_budget)
            if first and is_root:
                monitor.record_initial(slot.root, window)
            elif not first:
                # The segment right after tool result `calls` of this trajectory: decide on it (no lag). A
                # branch's first segment follows a result its parent already decided on, so it is skipped.
                decision = scheduler.decide(slot.index, calls, monitor.delta(slot.root, window))
                out.decisions.append(decision)
                queue.extend((child, node, calls, used - len(gen.token_ids)) for child in decision.children)
            first = False
            if not gen.tool_calls or gen.finish_reason == "length":
                _end(tree, scheduler, slot, seg.node_id, gen.finish_reason)  # answer, EOS, or cut by max_tokens
                break
            if calls >= calls_limit:
                _end(tree, scheduler, slot, seg.node_id, "call_limit")
                break
            if used >= max_response_tokens:  # a call, but no room left for its result
                _end(tree, scheduler, slot, seg.node_id, "length")
                break
            result_text = "".join(format_result(tools(call)) for call in gen.tool_calls)
            full_ids = policy.encode(result_text)
            result_ids = full_ids[: max_response_tokens - used]
            meta = {"truncated_from_tokens": len(full_ids)} if len(result_ids) < len(full_ids) else {}
            # `text` keeps the whole result for inspection; `meta` says when the model saw only its first tokens.
            tool_seg = tree.add_segment(seg.node_id, SegmentKind.TOOL, result_ids, text=result_text, meta=meta)
            out.tool_calls += 1
            calls += 1
            used += len(result_ids)
            node = tool_seg.node_id
            if used >= max_response_tokens:
                _end(tree, scheduler, slot, node, "length")
                break
    tree.validate()
    return out


def _end(tree: RolloutTree, scheduler: BranchScheduler, slot: TrajectorySlot, leaf: int, reason: str) -> None:
    tree.end_trajectory(
        slot.index,
        leaf,
        origin=slot.origin.value,
        root=slot.root,
        parent=slot.parent,
        branch_step=slot.branch_step,
        finish_reason=reason,
    )
    scheduler.finish(slot.index)
