"""RolloutEngine: many groups, rewards, version tags, server failover, concurrency limits, backpressure."""

from __future__ import annotations

import anyio
import pytest

from arpo_core.algo.rewards import make_reward_function
from arpo_core.config import ArpoConfig, load_config
from arpo_core.runtime.engine import FinishedGroup, PromptGroup, RolloutEngine
from arpo_core.runtime.inference import InferenceError
from arpo_core.runtime.openai_client import ServerUnavailableError
from arpo_core.testing import FakeToolClient, PolicyInferenceClient, PolicyTokenizer, ScriptedPolicy
from arpo_core.toolcalls import TagProtocol

pytestmark = pytest.mark.anyio


def engine(clients: list[PolicyInferenceClient], config: ArpoConfig, policy: ScriptedPolicy) -> RolloutEngine:
    tools = FakeToolClient({"python": lambda args: "42"})
    return RolloutEngine(
        clients,
        PolicyTokenizer(policy),
        tools,
        TagProtocol(),
        config,
        vocab_size=policy.vocab_size,
        reward_fn=make_reward_function(config.algo.reward),
        cooldown_s=60,
    )


def small_config(**extra: str) -> ArpoConfig:
    overrides = ["algo.branching.budget=6", "algo.branching.global_samples=3", "rollout.max_response_tokens=300"]
    return load_config(overrides=[*overrides, *(f"{k}={v}" for k, v in extra.items())])


async def collect(eng: RolloutEngine, prompts: list[PromptGroup], buffer: int = 2) -> list[FinishedGroup]:
    send, receive = anyio.create_memory_object_stream[FinishedGroup](max_buffer_size=buffer)
    out: list[FinishedGroup] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(eng.run, prompts, send)
        async with receive:
            out.extend([group async for group in receive])
    return out


def prompts(n: int) -> list[PromptGroup]:
    return [PromptGroup(f"q{i}", (3, 4, i), ground_truth="42") for i in range(n)]


async def test_every_group_arrives_with_m_rewarded_trajectories_and_its_version() -> None:
    policy = ScriptedPolicy(seed=0)
    eng = engine([PolicyInferenceClient(policy, latency_s=0.001)], small_config(), policy)
    eng.policy_version = 7
    groups = await collect(eng, prompts(10))
    assert sorted(g.tree.group_id for g in groups) == sorted(f"q{i}" for i in range(10))
    for g in groups:
        assert len(g.tree) == 6 and g.policy_version == 7 and g.attempts == 1
        assert all(r.reward is not None and "format_ok" in r.reward_info for r in g.tree.records)
        assert g.tree.metadata["ground_truth"] == "42"
    # the scripted policy answers "42" most of the time after a tool call: some rewards are positive
    assert any(r.reward and r.reward > 0 for g in groups for r in g.tree.records)


async def test_a_failing_server_is_taken_out_and_its_groups_retried() -> None:
    policy = ScriptedPolicy(seed=1)
    bad = PolicyInferenceClient(policy, name="bad", fail_after=2)
    good = PolicyInferenceClient(policy, name="good", latency_s=0.001)
    eng = engine([bad, good], small_config(), policy)
    groups = await collect(eng, prompts(6))
    assert len(groups) == 6 and all(len(g.tree) == 6 for g in groups)
    assert all(g.server == "good" for g in groups)
    assert any(g.attempts == 2 for g in groups)


async def test_all_servers_down_is_a_clear_error() -> None:
    policy = ScriptedPolicy(seed=2)
    eng = engine(
        [PolicyInferenceClient(policy, name="only", fail_after=0)],
        small_config(**{"rollout.group_retries": "0"}),
        policy,
    )
    with pytest.raises(ServerUnavailableError, match="'only' is down"):
        await eng.rollout_group(prompts(1)[0])
    send, receive = anyio.create_memory_object_stream[FinishedGroup](max_buffer_size=1)
    with pytest.raises(InferenceError, match="every inference server is down"):  # unwrapped, not a group
        async with receive:
            await eng.run(prompts(1), send)


async def test_groups_in_flight_and_backpressure() -> None:
    policy = ScriptedPolicy(seed=3)
    client = PolicyInferenceClient(policy, latency_s=0.002)
    eng = engine([client], small_config(**{"rollout.max_groups_in_flight": "2"}), policy)
    send, receive = anyio.create_memory_object_stream[FinishedGroup](max_buffer_size=0)
    started: list[int] = []
    original = eng.rollout_group

    async def spy(prompt: PromptGroup) -> FinishedGroup:
        started.append(1)
        return await original(prompt)

    eng.rollout_group = spy  # type: ignore[method-assign]
    async with anyio.create_task_group() as tg:
        tg.start_soon(eng.run, prompts(8), send)
        async with receive:
            first = await receive.receive()
            # nobody reads for a while: a group holds its slot until delivered, so at most 2 more have started
            with anyio.move_on_after(0.3):
                await anyio.sleep_forever()
            assert len(started) <= 3
            rest = [g async for g in receive]
    assert len(rest) + 1 == 8 and first.tree is not None


async def test_aepo_pre_monitoring_is_deterministic_under_concurrency() -> None:
    # N of each group comes from that group's own first trajectory, so groups expanded concurrently (in whatever
    # order their requests are served) get the same N, and the same global trajectories, as one at a time
    policy = ScriptedPolicy(seed=4)
    cfg = small_config(**{"algo.branching.dynamic_global_samples": "true"})
    concurrent = await collect(engine([PolicyInferenceClient(policy, latency_s=0.001)], cfg, policy), prompts(8))
    one_by_one = engine([PolicyInferenceClient(policy)], cfg, policy)
    sequential = [await one_by_one.rollout_group(p) for p in prompts(8)]
    by_id = {g.tree.group_id: g for g in concurrent}
    for g in sequential:
        other = by_id[g.tree.group_id]
        assert other.global_samples == g.global_samples == g.tree.metadata["global_samples"]
        assert _globals(other) == _globals(g)
    assert len({g.global_samples for g in sequential}) > 1  # N differs between prompts


async def test_finished_groups_record_the_configured_n_without_pre_monitoring() -> None:
    policy = ScriptedPolicy(seed=5)
    groups = await collect(engine([PolicyInferenceClient(policy)], small_config(), policy), prompts(3))
    assert [g.global_samples for g in groups] == [3, 3, 3]


def _globals(group: FinishedGroup) -> list[list[int]]:
    return sorted(t.token_ids for t in group.tree.trajectories() if t.record.origin == "global")
