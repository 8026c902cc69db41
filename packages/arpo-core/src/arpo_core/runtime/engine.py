"""``RolloutEngine``: many prompt groups in flight over one or more inference servers, into a bounded stream.

    engine = RolloutEngine([OpenAITokenClient(url, model)], tokenizer, tools, parser, config, vocab_size=V)
    send, receive = anyio.create_memory_object_stream[FinishedGroup](max_buffer_size=4)
    async with anyio.create_task_group() as tg:
        tg.start_soon(engine.run, prompts, send)      # fills the stream; blocks when it is full (backpressure)
        async for group in receive: ...               # e.g. the trainer, which drops groups that are too stale

* Each group is expanded as an ARPO tree (``group_rollout``); all its requests go to one server, so its branches
  hit that server's prefix cache. Groups go to the healthy server with the fewest groups in flight.
* A server that fails (``ServerUnavailableError``) is taken out for ``cooldown_s`` and the group restarts on
  another, up to ``group_retries`` times; a partial tree is discarded, never emitted.
* Finished groups are rewarded (in a worker thread: math checks can be slow) and tagged with the policy version
  the engine had when the group started; the trainer uses it for the staleness bound.
* Concurrency is explicit: groups in flight, requests in flight, tool calls in flight (``RolloutConfig``).
* ``algo.branching.dynamic_global_samples`` (AEPO entropy pre-monitoring) sizes N per group from the group's own
  first trajectory — ``H_root`` its first-segment window, ``H_tool`` the window after its first tool result — before
  the other global samples start (``group_rollout``, ``algo.aepo``); ``FinishedGroup.global_samples`` is the N used.
* A setting the engine cannot honour is an error at construction, never silently dropped: a tag-protocol reward
  with a tool bonus under a parser whose calls that reward cannot see (hermes), or tag tools the reward's format
  check does not know.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio
from anyio.abc import ObjectSendStream

from arpo_core.algo.branching import BranchDecision, BranchScheduler, group_seed
from arpo_core.algo.entropy import make_estimator
from arpo_core.algo.entropy_monitor import EntropyMonitor
from arpo_core.algo.rewards import RewardFunction, TagProtocolReward
from arpo_core.config import ArpoConfig
from arpo_core.runtime.group_rollout import Limits, expand_group_async, first_leaf
from arpo_core.runtime.inference import InferenceClient, InferenceError, Tokenizer
from arpo_core.runtime.openai_client import ServerUnavailableError
from arpo_core.runtime.tools import ToolClient
from arpo_core.toolcalls import TagProtocol, ToolCallParser
from arpo_core.tree import RolloutTree

__all__ = ["FinishedGroup", "PromptGroup", "RolloutEngine", "check_reward_sees_tool_calls"]


@dataclass(frozen=True)
class PromptGroup:
    """One prompt to expand into a group of M trajectories."""

    group_id: str
    prompt_token_ids: tuple[int, ...]
    ground_truth: str | tuple[str, ...] = ""
    metadata: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class FinishedGroup:
    tree: RolloutTree
    policy_version: int
    """The engine's policy version when the group started (its oldest possible data)."""
    server: str
    decisions: tuple[BranchDecision, ...]
    tool_calls: int
    requests: int
    seconds: float
    attempts: int
    global_samples: int | None = None
    """N: trajectories started from the bare prompt before any fill; per group under AEPO pre-monitoring
    (``dynamic_global_samples``), else the configured one. ``None`` when unknown."""


@dataclass
class _Server:
    client: InferenceClient
    in_flight: int = 0
    down_until: float = 0.0
    failures: int = 0


class RolloutEngine:
    """Expands prompt groups with ARPO under explicit concurrency limits; see the module docstring."""

    def __init__(
        self,
        clients: Sequence[InferenceClient],
        tokenizer: Tokenizer,
        tools: ToolClient,
        parser: ToolCallParser,
        config: ArpoConfig,
        *,
        vocab_size: int,
        reward_fn: RewardFunction | None = None,
        cooldown_s: float = 30.0,
    ) -> None:
        if not clients:
            raise ValueError("RolloutEngine needs at least one inference server.")
        if reward_fn is not None:
            check_reward_sees_tool_calls(parser, reward_fn)
        self._servers = [_Server(c) for c in clients]
        self.tokenizer = tokenizer
        self.tools = tools
        self.parser = parser
        self.config = config
        self.vocab_size = config.algo.entropy.vocab_size or vocab_size
        self.reward_fn = reward_fn
        self.cooldown_s = cooldown_s
        self.limits = Limits.from_config(config.rollout)
        self.policy_version = 0
        self._groups = anyio.CapacityLimiter(config.rollout.max_groups_in_flight)

    # ------------------------------------------------------------------ servers
    def _pick(self) -> _Server:
        now = time.monotonic()
        healthy = [s for s in self._servers if s.down_until <= now]
        if not healthy:
            names = ", ".join(s.client.name for s in self._servers)
            raise InferenceError(f"every inference server is down ({names}); check them and restart the run.")
        return min(healthy, key=lambda s: s.in_flight)

    # ------------------------------------------------------------------ one group
    async def rollout_group(self, prompt: PromptGroup) -> FinishedGroup:
        """Expand one group (restarting it elsewhere if its server fails) and reward it."""
        algo = self.config.algo
        seed = group_seed(self.config.seed, prompt.group_id)
        version = self.policy_version
        start = time.perf_counter()
        attempts = 0
        while True:
            attempts += 1
            server = self._pick()
            server.in_flight += 1
            try:
                result = await expand_group_async(
                    prompt.group_id,
                    prompt.prompt_token_ids,
                    client=server.client,
                    tokenizer=self.tokenizer,
                    tools=self.tools,
                    parser=self.parser,
                    scheduler=BranchScheduler(algo.branching, seed=seed),
                    monitor=EntropyMonitor(
                        make_estimator(algo.entropy.estimator, self.vocab_size),
                        algo.entropy.window,
                        algo.entropy.reduction,
                    ),
                    config=self.config.rollout,
                    limits=self.limits,
                    top_logprobs=algo.entropy.top_logprobs,
                    metadata={**prompt.metadata, "ground_truth": prompt.ground_truth},
                )
            except ServerUnavailableError:
                server.failures += 1
                server.down_until = time.monotonic() + self.cooldown_s
                if attempts > self.config.rollout.group_retries:
                    raise
                continue
            finally:
                server.in_flight -= 1
            break
        if self.reward_fn is not None:
            await anyio.to_thread.run_sync(self._reward, result.tree, prompt.ground_truth)
        return FinishedGroup(
            result.tree,
            version,
            server.client.name,
            tuple(result.decisions),
            result.tool_calls,
            result.requests,
            time.perf_counter() - start,
            attempts,
            result.global_samples,
        )

    def _reward(self, tree: RolloutTree, ground_truth: str | tuple[str, ...]) -> None:
        assert self.reward_fn is not None
        for traj in tree.trajectories():
            result = self.reward_fn(traj.text, ground_truth)
            tree.set_reward(traj.index, result.score, result.to_info())

    # ------------------------------------------------------------------ many groups
    async def run(
        self,
        prompts: Iterable[PromptGroup] | AsyncIterable[PromptGroup],
        send: ObjectSendStream[FinishedGroup],
    ) -> None:
        """Expand every prompt, at most ``max_groups_in_flight`` at once (a group counts until it is delivered),
        sending each finished group; closes ``send`` at the end. A full stream blocks new groups (backpressure)."""
        try:
            await self._run(prompts, send)
        except Exception as err:  # a group failed for good: raise its own error, not a task-group wrapper
            raise first_leaf(err) from None

    async def _run(
        self,
        prompts: Iterable[PromptGroup] | AsyncIterable[PromptGroup],
        send: ObjectSendStream[FinishedGroup],
    ) -> None:
        async with send, anyio.create_task_group() as tg:

            async def one(prompt: PromptGroup, slot: object) -> None:
                try:  # the slot is held until the group is delivered: a full stream stops new groups
                    await send.send(await self.rollout_group(prompt))
                finally:
                    self._groups.release_on_behalf_of(slot)

            async def launch(prompt: PromptGroup) -> None:
                slot = object()  # a unique borrower for the groups-in-flight limiter
                await self._groups.acquire_on_behalf_of(slot)
                tg.start_soon(one, prompt, slot)

            if isinstance(prompts, AsyncIterable):
                async for prompt in prompts:
                    await launch(prompt)
            else:
                for prompt in prompts:
                    await launch(prompt)


def check_reward_sees_tool_calls(parser: ToolCallParser, reward_fn: RewardFunction) -> None:
    """Refuse a tag-protocol reward whose tool options cannot act on the calls ``parser`` produces.

    The tag reward finds tool calls by their tags (``algo.reward.tool_tags``): under another protocol (hermes) it
    sees none, so its tool bonus could never be earned; under the tag protocol a parser tool missing from
    ``tool_tags`` would make every response that calls it fail the format check, and a ``bonus_tools`` entry the
    parser does not define could never be called. Other reward functions are the caller's business.
    """
    if not isinstance(reward_fn, TagProtocolReward):
        return
    reward = reward_fn.config
    if not isinstance(parser, TagProtocol):
        if reward.tool_bonus != 0:
            raise ValueError(
                f"algo.reward.tool_bonus={reward.tool_bonus} can never be earned with {type(parser).__name__} "
                "tool calls, which the tag-protocol reward does not see; set algo.reward.tool_bonus=0 or use "
                "tool_calls.protocol='tags'."
            )
        return
    tools = set(parser.tools)
    unknown = sorted(tools - set(reward.tool_tags))
    if unknown:
        raise ValueError(
            f"tool_calls.tag_arguments defines {unknown}, which algo.reward.tool_tags={list(reward.tool_tags)} "
            "lacks, so every response calling them would fail the format check; add them to algo.reward.tool_tags."
        )
    never = [tool for tool in reward.bonus_tools if tool not in tools]
    if reward.tool_bonus != 0 and never:
        raise ValueError(
            f"algo.reward.bonus_tools={list(reward.bonus_tools)} includes {never}, which tool_calls.tag_arguments "
            "does not define, so algo.reward.tool_bonus could never be earned; drop them from bonus_tools or set "
            "tool_bonus=0."
        )
