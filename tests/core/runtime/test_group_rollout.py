"""The async group expansion gives the same tree as the synchronous specification, under real concurrency."""

from __future__ import annotations

import anyio
import pytest

from arpo_core.algo.branching import BranchScheduler
from arpo_core.algo.entropy import TopKTruncated
from arpo_core.algo.entropy_monitor import EntropyMonitor
from arpo_core.config import BranchingConfig, RolloutConfig
from arpo_core.runtime.group_rollout import Limits, expand_group_async
from arpo_core.simulation import expand_group
from arpo_core.testing import FakeToolClient, PolicyInferenceClient, PolicyTokenizer, ScriptedPolicy, echo_tool
from arpo_core.toolcalls import TagProtocol
from arpo_core.tree import RolloutTree, ToolCallInfo

pytestmark = pytest.mark.anyio


def canonical(tree: RolloutTree) -> list[tuple[object, ...]]:
    """Order-free view of a tree: each trajectory as (origin, branch step, its token ids, finish reason)."""
    return sorted(
        (r.origin, r.branch_step, tuple(tree.trajectory(r.index).token_ids), r.finish_reason) for r in tree.records
    )


def tools_like_echo() -> FakeToolClient:
    return FakeToolClient({"python": lambda args: echo_tool(ToolCallInfo("python", dict(args)))})


@pytest.mark.parametrize("seed", range(6))
async def test_async_matches_the_synchronous_specification(seed: int) -> None:
    # With branch slots to spare, every decision is order-free (keyed draws, lineage seeds), so concurrent
    # expansion must give exactly the sequential tree. (When slots run out, who gets the last one depends on
    # timing, as it must; the next test covers that case with invariants only.)
    policy = ScriptedPolicy(seed=seed)
    branching = BranchingConfig(budget=48, global_samples=4)
    sync = expand_group(
        "g", [3, 4, 5], policy, echo_tool, BranchScheduler(branching, seed=seed),
        EntropyMonitor(TopKTruncated(policy.vocab_size)), max_response_tokens=400,
    )  # fmt: skip
    config = RolloutConfig(max_response_tokens=400)
    client = PolicyInferenceClient(policy, latency_s=0.001)
    result = await expand_group_async(
        "g",
        [3, 4, 5],
        client=client,
        tokenizer=PolicyTokenizer(policy),
        tools=tools_like_echo(),
        parser=TagProtocol(),
        scheduler=BranchScheduler(branching, seed=seed),
        monitor=EntropyMonitor(TopKTruncated(policy.vocab_size)),
        config=config,
        limits=Limits.from_config(config),
    )
    assert not any(d.reason == "budget_exhausted" for d in [*sync.decisions, *result.decisions])
    assert len(result.tree) == 48
    assert canonical(result.tree) == canonical(sync.tree)
    assert result.tool_calls == sync.tool_calls
    assert client.peak_in_flight > 1  # trajectories really ran concurrently


async def test_contended_budget_still_gives_exactly_m() -> None:
    policy = ScriptedPolicy(seed=3)
    config = RolloutConfig(max_response_tokens=400)
    for seed in range(5):
        result = await expand_group_async(
            "g", [3, 4], client=PolicyInferenceClient(policy, latency_s=0.001), tokenizer=PolicyTokenizer(policy),
            tools=tools_like_echo(), parser=TagProtocol(),
            scheduler=BranchScheduler(BranchingConfig(budget=8, global_samples=2), seed=seed),
            monitor=EntropyMonitor(TopKTruncated(policy.vocab_size)), config=config, limits=Limits.from_config(config),
        )  # fmt: skip
        assert len(result.tree) == 8
        assert sum(r.origin == "branch" for r in result.tree.records) <= 6


async def test_request_limit_is_respected_across_groups() -> None:
    policy = ScriptedPolicy(seed=1)
    config = RolloutConfig(max_response_tokens=300, max_inflight_requests=3)
    limits = Limits.from_config(config)
    client = PolicyInferenceClient(policy, latency_s=0.002)

    async def one(i: int) -> None:
        await expand_group_async(
            f"g{i}", [3, 4, i], client=client, tokenizer=PolicyTokenizer(policy), tools=tools_like_echo(),
            parser=TagProtocol(), scheduler=BranchScheduler(BranchingConfig(budget=6, global_samples=3), seed=i),
            monitor=EntropyMonitor(TopKTruncated(policy.vocab_size)), config=config, limits=limits,
        )  # fmt: skip

    async with anyio.create_task_group() as tg:
        for i in range(4):
            tg.start_soon(one, i)
    assert client.peak_in_flight == 3


async def test_tool_failures_and_malformed_calls_are_results_not_crashes() -> None:
    policy = ScriptedPolicy(seed=2)

    def broken(args: object) -> str:
        raise RuntimeError("sandbox on fire")

    config = RolloutConfig(max_response_tokens=300)
    result = await expand_group_async(
        "g", [3], client=PolicyInferenceClient(policy), tokenizer=PolicyTokenizer(policy),
        tools=FakeToolClient({"python": broken}), parser=TagProtocol(),
        scheduler=BranchScheduler(BranchingConfig(budget=4, global_samples=4), seed=0),
        monitor=EntropyMonitor(TopKTruncated(policy.vocab_size)), config=config, limits=Limits.from_config(config),
    )  # fmt: skip
    texts = [s.text for s in result.tree.segments if s.kind.value == "tool"]
    assert texts and all("sandbox on fire" in t for t in texts)
