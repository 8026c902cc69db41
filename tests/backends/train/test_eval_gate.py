"""``train.eval_every``'s gate in ``arpo train``: an evaluation during RL never overlaps a weight publish."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from arpo_backends.cli.train import _EvalGate

pytestmark = pytest.mark.anyio


class _Trainer:
    policy_version = 3

    def __init__(self) -> None:
        self.published: list[Any] = []
        self.done = anyio.Event()

    def publish_weights(self, target: Any) -> None:  # in the loop's worker thread, as in TrainLoop
        self.published.append(target)
        anyio.from_thread.run_sync(self.done.set)


async def test_the_next_publish_waits_for_the_running_evaluation() -> None:
    gate, trainer = _EvalGate(), _Trainer()
    held = gate.hold_publishes(trainer)
    assert held.policy_version == 3  # everything but publish_weights passes through
    during: list[list[Any]] = []
    release = anyio.Event()

    async def evaluation() -> None:
        await release.wait()
        during.append(list(trainer.published))

    async with anyio.create_task_group() as tg:
        gate.start(tg, evaluation)
        tg.start_soon(anyio.to_thread.run_sync, held.publish_weights, "v4")
        # a publish that ignored the gate lands at once; give it a generous window to show up
        with anyio.move_on_after(0.3):
            await trainer.done.wait()
        release.set()
    assert during == [[]] and trainer.published == ["v4"]
    assert gate.take_waited() > 0.2 and gate.take_waited() == 0.0


async def test_a_failed_evaluation_releases_publishes_and_is_raised_once() -> None:
    gate, trainer = _EvalGate(), _Trainer()

    async def evaluation() -> None:
        raise ConnectionError("the server went away")

    async with anyio.create_task_group() as tg:
        gate.start(tg, evaluation)
    await anyio.to_thread.run_sync(gate.hold_publishes(trainer).publish_weights, "v4")
    assert trainer.published == ["v4"]
    with pytest.raises(ConnectionError, match="went away"):
        gate.raise_failure()
    gate.raise_failure()  # reported once
