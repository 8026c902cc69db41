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

__all__ = [
    "GeneratedSegment",
    "GroupExpansion",
    "SyncPolicy",
    "end_reason",
    "end_trajectory",
    "expand_group",
    "observe_segment",
    "truncate_result",
]


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
            decision = observe_segment(scheduler, monitor, slot, calls, first, seg.entropy)
            if decision is not None:
                out.decisions.append(decision)
                queue.extend((child, node, calls, used - len(gen.token_ids)) for child in decision.children)
            first = False
            reason = end_reason(bool(gen.tool_calls), gen.finish_reason, calls, calls_limit, used, max_response_tokens)
            if reason is not None:
                end_trajectory(tree, scheduler, slot, seg.node_id, reason)
                break
            result_text = "".join(format_result(tools(call)) for call in gen.tool_calls)
            result_ids, meta = truncate_result(policy.encode(result_text), max_response_tokens - used)
            tool_seg = tree.add_segment(seg.node_id, SegmentKind.TOOL, result_ids, text=result_text, meta=meta)
            out.tool_calls += 1
            calls += 1
            used += len(result_ids)
            node = tool_seg.node_id
            if used >= max_response_tokens:
                end_trajectory(tree, scheduler, slot, node, "length")
                break
    tree.validate()
    return out


# ---------------------------------------------------------------------------- the steps both expansions share


def observe_segment(
    scheduler: BranchScheduler,
    monitor: EntropyMonitor,
    slot: TrajectorySlot,
    tool_step: int,
    first: bool,
    entropy: float | None,
) -> BranchDecision | None:
    """What a new generated segment means for ARPO: the first segment of a root records ``H_initial``; the
    segment right after tool result ``tool_step`` is decided on (no lag). A branch's first segment follows a
    result its parent already decided on, so it is neither."""
    window = decision_window(entropy, scheduler.branch_budget)
    if first:
        if slot.origin is not Origin.BRANCH:
            monitor.record_initial(slot.root, window)
        return None
    return scheduler.decide(slot.index, tool_step, monitor.delta(slot.root, window))


def end_reason(has_calls: bool, finish_reason: str, calls: int, call_limit: int, used: int, budget: int) -> str | None:
    """Why a trajectory ends after a generated segment, or None when its tool call(s) should run."""
    if not has_calls or finish_reason == "length":
        return finish_reason  # an answer, EOS, or cut by max_tokens
    if calls >= call_limit:
        return "call_limit"
    if used >= budget:
        return "length"  # a call, but no room left for its result
    return None


def truncate_result(ids: Sequence[int], room: int) -> tuple[list[int], dict[str, int]]:
    """A tool result's ids cut to the room left in the response budget; ``meta`` records a cut (the segment's
    text keeps the whole result for inspection)."""
    kept = list(ids[: max(room, 0)])
    return kept, ({"truncated_from_tokens": len(ids)} if len(kept) < len(ids) else {})


def end_trajectory(tree: RolloutTree, scheduler: BranchScheduler, slot: TrajectorySlot, leaf: int, reason: str) -> None:
    """Record that ``slot``'s trajectory ended at node ``leaf`` and tell the scheduler."""
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
