"""The training loop: batches from finished groups, the staleness bound, async overlap vs sync, followers, saves."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import pytest
from tests.core.builders import hand_tree

from arpo_core.algo.rewards import make_reward_function
from arpo_core.config import AdvantageConfig, ArpoConfig, load_config
from arpo_core.data.samples import Sample
from arpo_core.runtime.engine import FinishedGroup, RolloutEngine
from arpo_core.runtime.train_loop import (
    LocalCommunicator,
    LoopSettings,
    PromptSource,
    TrainLoop,
    is_stale,
    make_train_batch,
)
from arpo_core.runtime.trainer import TrainBatch, WeightTarget
from arpo_core.testing import FakeToolClient, PolicyInferenceClient, PolicyTokenizer, ScriptedPolicy
from arpo_core.toolcalls import TagProtocol

pytestmark = pytest.mark.anyio


class FakeTrainer:
    """Records what it is asked to do; ``train_seconds`` makes a step take time (to see the overlap)."""

    def __init__(self, train_seconds: float = 0.0) -> None:
        self.version = 0
        self.train_seconds = train_seconds
        self.batches: list[TrainBatch] = []
        self.intervals: list[tuple[float, float]] = []
        self.published: list[int] = []
        self.saved: list[tuple[int, Mapping[str, Any] | None]] = []

    @property
    def policy_version(self) -> int:
        return self.version

    def train_step(self, batch: TrainBatch) -> Mapping[str, float]:
        began = time.perf_counter()
        time.sleep(self.train_seconds)
        self.batches.append(batch)
        self.version += 1
        self.intervals.append((began, time.perf_counter()))
        return {"loss": 0.5}

    def save(self, path: Path, *, data_position: Mapping[str, Any] | None = None) -> Path:
        self.saved.append((self.version, data_position))
        return path

    def load(self, path: Path) -> Mapping[str, Any]:
        return {}

    def publish_weights(self, target: WeightTarget) -> list[str]:
        self.published.append(self.version)
        return []


def _config() -> ArpoConfig:
    return load_config(
        overrides=["algo.branching.budget=4", "algo.branching.global_samples=2", "rollout.max_response_tokens=200"]
    )


def _engine(latency: float = 0.002, **client: Any) -> tuple[RolloutEngine, PolicyInferenceClient]:
    policy = ScriptedPolicy(seed=0)
    cfg = _config()
    inference = PolicyInferenceClient(policy, latency_s=latency, **client)
    eng = RolloutEngine(
        [inference],
        PolicyTokenizer(policy),
        FakeToolClient({"python": lambda args: "42"}),
        TagProtocol(),
        cfg,
        vocab_size=policy.vocab_size,
        reward_fn=make_reward_function(cfg.algo.reward),
    )
    return eng, inference


def _source(n: int = 12, consumed: int = 0) -> PromptSource:
    samples = [Sample(f"s{i}", ({"role": "user", "content": f"q{i}"},), ("42",)) for i in range(n)]

    async def encode(messages: Any) -> list[int]:
        return [3, 4, int(messages[0]["content"][1:]) + 5]

    return PromptSource(samples, encode, seed=1, consumed=consumed)


def _loop(trainer: FakeTrainer, **settings: Any) -> TrainLoop:
    return TrainLoop(
        trainer,
        LocalCommunicator(),
        settings=LoopSettings(**{"steps": 4, "groups_per_step": 3, **settings}),
        advantage=AdvantageConfig(),
        target=WeightTarget("none"),
    )


def test_staleness_bound() -> None:
    assert not is_stale(group_version=3, trainer_version=3, max_staleness=0)
    assert is_stale(group_version=2, trainer_version=3, max_staleness=0)
    assert not is_stale(group_version=2, trainer_version=3, max_staleness=1)
    assert is_stale(group_version=1, trainer_version=3, max_staleness=1)


def test_train_batch_has_grpo_advantages_per_group() -> None:
    tree = hand_tree()  # 3 trajectories, rewards 1.0, -0.5, 0.2
    group = FinishedGroup(tree, 5, "s", (), 0, 0, 0.0, 1)
    batch = make_train_batch(7, [group], AdvantageConfig())
    # mean 0.23333; deviations .76667, −.73333, −.03333; sample variance 1.12667 / 2 = .56333, std .75056:
    # Â = 1.02147, −0.97706, −0.04441 on every generated token (soft attribution)
    for traj, expected in zip(batch.tokens[0], (1.02147, -0.97706, -0.04441), strict=True):
        assert traj.advantages[traj.loss_mask.astype(bool)] == pytest.approx(expected, abs=1e-4)
    assert batch.step == 7 and batch.policy_versions == (5,) and batch.num_trajectories == 3


def test_prompt_source_order_is_a_seeded_permutation_per_epoch_and_resumes() -> None:
    async def main() -> tuple[list[str], list[str]]:
        src = _source(4)
        first = [(await src.next_group()).group_id for _ in range(8)]
        resumed = _source(4, consumed=5)
        return first, [(await resumed.next_group()).group_id for _ in range(3)]

    first, resumed = anyio.run(main)
    assert sorted(first[:4]) == [f"s{i}@e0" for i in range(4)] and sorted(first[4:]) == [f"s{i}@e1" for i in range(4)]
    order0 = [int(i) for i in np.random.default_rng([1, 0]).permutation(4)]
    assert first[:4] == [f"s{i}@e0" for i in order0]
    assert resumed == first[5:8]


async def test_async_mode_overlaps_rollout_with_training_and_respects_staleness() -> None:
    eng, _ = _engine(latency=0.02)
    trainer = FakeTrainer(train_seconds=0.3)
    finished: list[float] = []
    rollout_group = eng.rollout_group

    async def tracked(prompt: Any) -> FinishedGroup:
        group = await rollout_group(prompt)
        finished.append(time.perf_counter())
        return group

    eng.rollout_group = tracked  # type: ignore[method-assign]
    result = await _loop(trainer, max_staleness=1).run_leader(eng, _source())
    assert result.steps_done == 4 and len(trainer.batches) == 4
    assert all(len(b.trees) == 3 for b in trainer.batches)
    # groups kept being generated (and finished) while a step trained
    assert any(a < t < b for a, b in trainer.intervals for t in finished)
    for batch in trainer.batches:
        assert all(batch.step - v <= 1 for v in batch.policy_versions)  # the bound: version v trains at step ≤ v + 1
    assert trainer.published == [1, 2, 3, 4]


async def test_async_launches_no_further_ahead_than_the_staleness_bound() -> None:
    """The launch gate: with max_staleness s, groups of at most s + 1 steps are launched ahead of the trainer, so
    none has to be dropped as stale; with s = 0 every batch is on-policy."""
    for staleness in (0, 1):
        eng, _ = _engine(latency=0.002)
        trainer = FakeTrainer(train_seconds=0.1)
        started: list[int] = []
        rollout_group = eng.rollout_group

        async def tracked(
            prompt: Any, trainer: FakeTrainer = trainer, started: list[int] = started, inner: Any = rollout_group
        ) -> FinishedGroup:
            started.append(trainer.version)
            return await inner(prompt)

        eng.rollout_group = tracked  # type: ignore[method-assign]
        result = await _loop(trainer, max_staleness=staleness).run_leader(eng, _source())
        assert result.dropped_stale == 0
        for version in range(4):  # groups started while the trainer was at `version`: ≤ (s + 1) steps' worth
            assert sum(v <= version for v in started) <= (version + staleness + 1) * 3
        if staleness == 0:
            for step, batch in enumerate(trainer.batches):
                assert batch.policy_versions == (step,) * 3


async def test_sync_mode_never_overlaps() -> None:
    eng, _ = _engine(latency=0.002)
    trainer = FakeTrainer(train_seconds=0.05)
    started: list[float] = []
    rollout_group = eng.rollout_group

    async def tracked(prompt: Any) -> FinishedGroup:
        started.append(time.perf_counter())
        return await rollout_group(prompt)

    eng.rollout_group = tracked  # type: ignore[method-assign]
    result = await _loop(trainer, mode="sync").run_leader(eng, _source())
    assert result.steps_done == 4 and result.dropped_stale == 0
    assert not any(a < t < b for a, b in trainer.intervals for t in started)
    assert len(started) == 12  # exactly the prompts of 4 steps
    for step, batch in enumerate(trainer.batches):
        assert batch.policy_versions == (step,) * 3


async def test_checkpoints_carry_the_data_position_and_a_failure_saves_first(tmp_path: Path) -> None:
    eng, _ = _engine()
    trainer = FakeTrainer()
    await _loop(trainer, mode="sync", save_every=2, checkpoint_dir=tmp_path).run_leader(eng, _source())
    assert [(v, pos) for v, pos in trainer.saved] == [(2, {"prompts_consumed": 6}), (4, {"prompts_consumed": 12})]

    failing, _ = _engine(fail_after=40)
    failing.config = load_config(
        overrides=[
            "algo.branching.budget=4",
            "algo.branching.global_samples=2",
            "rollout.max_response_tokens=200",
            "rollout.group_retries=0",
        ]
    )
    trainer = FakeTrainer()
    with pytest.raises(Exception, match="down"):
        await _loop(trainer, mode="sync", steps=50, save_every=100, checkpoint_dir=tmp_path).run_leader(
            failing, _source()
        )
    assert trainer.version >= 1 and trainer.saved and trainer.saved[-1][0] == trainer.version


def test_followers_run_the_same_collective_calls() -> None:
    """Two "ranks" in threads, a queue standing in for the broadcast: same batches, same order, then stop."""
    channel: queue.Queue[Any] = queue.Queue()

    class Leader:
        is_main = True

        def broadcast_object(self, obj: Any, src: int = 0) -> Any:
            channel.put(obj)
            return obj

    class Follower:
        is_main = False

        def broadcast_object(self, obj: Any, src: int = 0) -> Any:
            return channel.get(timeout=30)

    leader_trainer, follower_trainer = FakeTrainer(), FakeTrainer()
    settings = LoopSettings(steps=3, groups_per_step=2, mode="sync")
    follower = TrainLoop(
        follower_trainer, Follower(), settings=settings, advantage=AdvantageConfig(), target=WeightTarget("none")
    )
    thread = threading.Thread(target=follower.run_follower)
    thread.start()
    leader = TrainLoop(
        leader_trainer, Leader(), settings=settings, advantage=AdvantageConfig(), target=WeightTarget("none")
    )
    eng, _ = _engine()
    anyio.run(leader.run_leader, eng, _source())
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert [b.step for b in follower_trainer.batches] == [0, 1, 2]
    assert [[t.group_id for t in b.trees] for b in follower_trainer.batches] == [
        [t.group_id for t in b.trees] for b in leader_trainer.batches
    ]
    assert follower_trainer.published == leader_trainer.published == [1, 2, 3]
