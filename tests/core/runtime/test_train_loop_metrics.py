"""The per-step rollout diagnostics of ``arpo train``: each number computed by hand from groups built by hand.

Two groups (every token count and entropy window chosen here):

    group A (M = 4)                                          group B (M = 2)
    prompt ─ g1 (3 tok, W 0.4) ─ tool (2) ─ a1 (2, W 0.9)    prompt ─ h1 (2, W 0.6) ─ tool (4) ─ h2 (3, W 0.5)
                                       └ b1 (1, W 0.7)              └ h3 (5, W 0.3)
           ─ g2 (4, W 0.2)                                   rewards 0.2, 0.2 (zero variance)
           ─ g3 (2, no logprobs: no window)
    trajectories a1 (global), b1 (branch), g2 (global), g3 (fill); rewards 1.0, 0.0, 1.0, 0.5
"""

from __future__ import annotations

import math
import re
import sys
import types
from collections.abc import AsyncIterable, Iterable, Mapping
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import pytest
from anyio.abc import ObjectSendStream

import arpo_core.report.metrics as metrics_module
from arpo_core.config import AdvantageConfig
from arpo_core.data.samples import Sample
from arpo_core.report import make_sinks
from arpo_core.runtime.engine import FinishedGroup, PromptGroup
from arpo_core.runtime.train_loop import (
    LocalCommunicator,
    LoopSettings,
    PromptSource,
    TrainLoop,
    group_metrics,
    throughput_metrics,
)
from arpo_core.runtime.trainer import TrainBatch, WeightTarget
from arpo_core.tree import RolloutTree, SegmentKind

pytestmark = pytest.mark.anyio


def _generated(tree: RolloutTree, parent: int, length: int, window: float | None) -> int:
    top = None if window is None else [[-0.1]] * length  # a window is only stored where top-k logprobs were
    return tree.add_segment(parent, SegmentKind.GENERATED, [5] * length, top_logprobs=top, entropy=window).node_id


def group_a() -> FinishedGroup:
    t = RolloutTree("a", [1, 2])
    g1 = _generated(t, 0, 3, 0.4)
    tool = t.add_segment(g1, SegmentKind.TOOL, [7, 7]).node_id
    a1 = _generated(t, tool, 2, 0.9)
    b1 = _generated(t, tool, 1, 0.7)
    g2 = _generated(t, 0, 4, 0.2)
    g3 = _generated(t, 0, 2, None)
    t.end_trajectory(0, a1, origin="global", root=0)
    t.end_trajectory(1, b1, origin="branch", root=0, parent=0, branch_step=1)
    t.end_trajectory(2, g2, origin="global", root=2)
    t.end_trajectory(3, g3, origin="fill", root=3)
    for i, reward in enumerate([1.0, 0.0, 1.0, 0.5]):
        t.set_reward(i, reward, {"answer_score": reward, "format_ok": True})
    return FinishedGroup(t, 0, "s", (), tool_calls=1, requests=5, seconds=2.0, attempts=1)


def group_b() -> FinishedGroup:
    t = RolloutTree("b", [1, 2])
    h1 = _generated(t, 0, 2, 0.6)
    tool = t.add_segment(h1, SegmentKind.TOOL, [7] * 4).node_id
    h2 = _generated(t, tool, 3, 0.5)
    h3 = _generated(t, 0, 5, 0.3)
    t.end_trajectory(0, h2, origin="global", root=0)
    t.end_trajectory(1, h3, origin="global", root=1)
    for i in range(2):
        t.set_reward(i, 0.2, {"answer_score": 0.2, "format_ok": i == 0})
    return FinishedGroup(t, 0, "s", (), tool_calls=1, requests=3, seconds=1.0, attempts=1)


def test_rollout_diagnostics_by_hand() -> None:
    m = group_metrics([group_a(), group_b()])
    rewards = [1.0, 0.0, 1.0, 0.5, 0.2, 0.2]
    mean = 2.9 / 6
    assert m["trajectories"] == 6 and m["groups"] == 2
    assert m["reward_mean"] == pytest.approx(mean)
    # population std: sqrt(Σ (r − mean)² / 6)
    assert m["reward_std"] == pytest.approx(math.sqrt(sum((r - mean) ** 2 for r in rewards) / 6))
    assert m["zero_variance_group_frac"] == 0.5  # group B's two rewards are equal
    # first segments (parent = prompt) with a window: 0.4, 0.2 (A; g3 has none), 0.6, 0.3 (B)
    assert m["entropy_window_first_mean"] == pytest.approx((0.4 + 0.2 + 0.6 + 0.3) / 4)
    # segments right after a tool result: a1 0.9, b1 0.7 (one shared tool node), h2 0.5
    assert m["entropy_window_after_tool_mean"] == pytest.approx((0.9 + 0.7 + 0.5) / 3)
    assert m["entropy_window_after_tool_gap"] == pytest.approx(0.7 - 0.375)
    assert m["branches"] == 1
    assert m["branches_per_trajectory"] == pytest.approx(1 / 6)
    assert m["branches_per_group"] == 0.5
    # N: group A started 2 globals (the fill does not count), B 2
    assert (m["global_samples_mean"], m["global_samples_min"], m["global_samples_max"]) == (2.0, 2.0, 2.0)
    # generated tokens, each node once: A 3 + 2 + 1 + 4 + 2 = 12, B 2 + 3 + 5 = 10
    assert m["generated_tokens"] == 22
    # trained (loss) tokens per trajectory: A (3+2) + (3+1) + 4 + 2 = 15, B (2+3) + 5 = 10
    assert m["trained_tokens"] == 25
    # response tokens with tool results: expanded A 7 + 6 + 4 + 2 = 19, B 9 + 5 = 14; unique A 14, B 14
    assert (m["response_tokens"], m["response_tokens_unique"]) == (33, 28)
    # the names the report, the plot and the progress line read are unchanged
    assert m["accuracy"] == pytest.approx(2 / 6)
    assert m["format_ok"] == pytest.approx(5 / 6)
    assert m["tool_calls_per_trajectory"] == pytest.approx(2 / 6)
    assert m["rollout_group_seconds"] == 1.5


def test_global_samples_vary_per_group() -> None:
    """AEPO sizes N per group: counted from the records here (A: 2 globals; A with its branch as a third: 3)."""
    a = group_a()
    layout = a.tree.to_dict()
    layout["trajectories"][1]["origin"] = "global"
    m = group_metrics([a, replace(a, tree=RolloutTree.from_dict(layout))])
    assert (m["global_samples_mean"], m["global_samples_min"], m["global_samples_max"]) == (2.5, 2.0, 3.0)


@pytest.mark.skipif(
    "global_samples" not in {f.name for f in fields(FinishedGroup)}, reason="FinishedGroup records no N here"
)
def test_recorded_global_samples_win_over_the_count() -> None:
    recorded = replace(group_a(), global_samples=3)  # type: ignore[call-arg, unused-ignore]
    assert group_metrics([recorded])["global_samples_mean"] == 3.0


def test_metrics_with_nothing_to_average_are_left_out() -> None:
    t = RolloutTree("c", [1])
    only = _generated(t, 0, 2, None)
    t.end_trajectory(0, only, origin="global", root=0)
    t.set_reward(0, 1.0)
    m = group_metrics([FinishedGroup(t, 0, "s", (), 0, 1, 0.1, 1)])
    assert not {k for k in m if k.startswith("entropy_window")}
    assert m["reward_std"] == 0.0 and m["zero_variance_group_frac"] == 1.0  # one trajectory: no signal
    empty = group_metrics([])
    assert empty["reward_std"] == 0.0 and "global_samples_mean" not in empty


def test_throughput_by_hand() -> None:
    rollout = {"generated_tokens": 300.0, "trained_tokens": 800.0}
    got = throughput_metrics(rollout, rollout_wall_seconds=2.0, train_step_seconds=4.0)
    assert got == {
        "rollout_wall_seconds": 2.0,
        "rollout_tokens_per_second": 150.0,
        "train_step_seconds": 4.0,
        "train_tokens_per_second": 200.0,
    }
    zero = throughput_metrics(rollout, rollout_wall_seconds=0.0, train_step_seconds=0.0)
    assert zero["rollout_tokens_per_second"] == 0.0 and zero["train_tokens_per_second"] == 0.0


# ---------------------------------------------------------------------------------------------- through the loop
class _Trainer:
    def __init__(self) -> None:
        self.version = 0

    @property
    def policy_version(self) -> int:
        return self.version

    def train_step(self, batch: TrainBatch) -> Mapping[str, float]:
        self.version += 1
        return {"loss": 0.25, "clip_frac_high": 0.0}

    def save(self, path: Path, *, data_position: Mapping[str, Any] | None = None) -> Path:
        return path

    def load(self, path: Path) -> Mapping[str, Any]:
        return {}

    def publish_weights(self, target: WeightTarget) -> list[str]:
        return []


class _Engine:
    """Sends the two hand-built groups for every two prompts (what ``RolloutEngine.run`` does, minus generation)."""

    policy_version = 0

    async def run(
        self, prompts: Iterable[PromptGroup] | AsyncIterable[PromptGroup], send: ObjectSendStream[FinishedGroup]
    ) -> None:
        made = [group_a, group_b]
        async with send:
            count = 0
            if isinstance(prompts, AsyncIterable):
                async for _ in prompts:
                    await send.send(made[count % 2]())
                    count += 1
            else:
                for _ in prompts:
                    await send.send(made[count % 2]())
                    count += 1


def _source() -> PromptSource:
    samples = [Sample(f"s{i}", ({"role": "user", "content": "q"},), ("42",)) for i in range(4)]

    async def encode(messages: Any) -> list[int]:
        return [1, 2]

    return PromptSource(samples, encode)


async def _run(mode: str) -> list[dict[str, float]]:
    rows: list[dict[str, float]] = []
    loop = TrainLoop(
        _Trainer(),
        LocalCommunicator(),
        settings=LoopSettings(steps=2, groups_per_step=2, mode=mode),  # type: ignore[arg-type]
        advantage=AdvantageConfig(),
        target=WeightTarget("none"),
        log=lambda step, m: rows.append(dict(m)),
    )
    await loop.run_leader(_Engine(), _source())  # type: ignore[arg-type]
    return rows


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_every_step_row_carries_the_diagnostics(mode: str) -> None:
    rows = await _run(mode)
    assert len(rows) == 2
    for row in rows:
        assert row["zero_variance_group_frac"] == 0.5 and row["generated_tokens"] == 22
        assert row["loss"] == 0.25 and row["clip_frac_high"] == 0.0  # the trainer's numbers pass through
        assert row["rollout_tokens_per_second"] == pytest.approx(22 / row["rollout_wall_seconds"])
        assert row["train_tokens_per_second"] == pytest.approx(25 / row["train_step_seconds"])
        assert 0 < row["train_step_seconds"] <= row["train_seconds"]
        if mode == "sync":
            assert row["rollout_wall_seconds"] == row["rollout_seconds"]
        else:  # since the previous step's groups were in: at least the wait, plus the previous step's training
            assert row["rollout_wall_seconds"] >= row["rollout_seconds"]


def _documented() -> set[str]:
    doc = metrics_module.__doc__ or ""
    return set(re.findall(r"^    ([a-z_0-9]+) +(?:rollout|loop|trainer)  ", doc, flags=re.MULTILINE))


async def test_every_train_row_name_is_in_the_one_table() -> None:
    """The loop's and the rollout's names are documented in ``arpo_core.report.metrics`` (the trainer's are
    checked in tests/backends/train/test_step_metrics.py)."""
    rows = await _run("sync")
    emitted = set(rows[0]) - {"loss", "clip_frac_high"}  # the fake trainer's two
    assert emitted <= _documented(), sorted(emitted - _documented())


class _FakeRun:
    def __init__(self) -> None:
        self.logged: list[dict[str, Any]] = []
        self.id = "r1"

    def define_metric(self, name: str, **kwargs: Any) -> None:
        pass

    def log(self, data: Mapping[str, Any]) -> None:
        self.logged.append(dict(data))

    def finish(self) -> None:
        pass


async def test_tensorboard_and_wandb_get_every_numeric_metric_of_a_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_file_loader import RawEventFileLoader  # type: ignore[import-untyped]
    from tensorboard.compat.proto import event_pb2  # type: ignore[import-untyped]

    run = _FakeRun()
    wandb = types.ModuleType("wandb")
    wandb.init = lambda **kwargs: run  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "wandb", wandb)
    row = (await _run("sync"))[0]
    with make_sinks(tmp_path / "run", tensorboard=True, wandb=True, config={}) as sinks:
        sinks.log(0, row)
    tags: dict[str, float] = {}
    for path in (tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*"):
        for record in RawEventFileLoader(str(path)).Load():
            for value in event_pb2.Event.FromString(record).summary.value:
                tags[value.tag] = value.simple_value
    assert set(tags) == {f"train/{k}" for k in row}
    assert tags["train/entropy_window_after_tool_mean"] == pytest.approx(0.7)
    assert set(run.logged[0]) == {f"train/{k}" for k in row} | {"train/step"}
    assert run.logged[0]["train/reward_std"] == row["reward_std"]
