"""Trees and groups the core tests share."""

from __future__ import annotations

import math

from arpo_core.algo.branching import BranchScheduler
from arpo_core.algo.entropy import TopKTruncated
from arpo_core.algo.entropy_monitor import EntropyMonitor
from arpo_core.config import BranchingConfig
from arpo_core.simulation import GroupExpansion, expand_group
from arpo_core.testing import ScriptedPolicy, echo_tool
from arpo_core.tree import RolloutTree, SegmentKind, ToolCallInfo


def hand_tree() -> RolloutTree:
    """prompt(0) ─ g(1) ─ tool(2) ─ a(3)   trajectory 0 (global)
                    └ b(4)   trajectory 1 (branch after tool result 1)
    └ c(5)                   trajectory 2 (global)"""
    t = RolloutTree("q-1", [100, 101], prompt_text="Q?", metadata={"ground_truth": ["42"]})
    g = t.add_segment(
        0,
        "generated",
        [1, 2, 3],
        logprobs=[-0.1, -0.2, -0.3],
        top_logprobs=[[-0.1, -2.5], [-0.2, -1.9], [-0.3, -float("inf")]],
        policy_version=3,
        text="<python>x</python>",
        tool_calls=(ToolCallInfo("python", {"code": "x"}),),
        entropy=0.25,
    )
    tool = t.add_segment(g.node_id, SegmentKind.TOOL, [7, 8], text=" <result>\n1\n</result>", meta={"latency_s": 0.01})
    a = t.add_segment(tool.node_id, "generated", [4, 5], logprobs=[-0.4, -0.5], policy_version=3)
    b = t.add_segment(tool.node_id, "generated", [6], logprobs=[-0.6], policy_version=4)
    c = t.add_segment(0, "generated", [9, 9], logprobs=[-1.0, -math.pi])
    t.end_trajectory(0, a.node_id, origin="global", root=0, finish_reason="stop")
    t.end_trajectory(1, b.node_id, origin="branch", root=0, parent=0, branch_step=1, finish_reason="stop")
    t.end_trajectory(2, c.node_id, origin="global", root=2, finish_reason="length")
    for i, r in enumerate([1.0, -0.5, 0.2]):
        t.set_reward(i, r, {"f1": r})
    return t


def expand(seed: int = 0, policy: ScriptedPolicy | None = None, **branching: object) -> GroupExpansion:
    """One simulated ARPO group with the scripted policy (defaults: M = 8, N = 4, call_limit = 3)."""
    config = BranchingConfig.model_validate({"budget": 8, "global_samples": 4, **branching})
    policy = policy or ScriptedPolicy(seed=seed)
    return expand_group(
        f"g{seed}",
        [3, 4, 5],
        policy,
        echo_tool,
        BranchScheduler(config, seed=seed),
        EntropyMonitor(TopKTruncated(policy.vocab_size)),
        max_response_tokens=400,
    )
