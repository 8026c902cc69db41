"""Checkpoints resume exactly, and a rank killed mid-run (or mid-save) loses nothing that was committed.

The uninterrupted run is the reference: a run killed after step k and resumed from its last complete checkpoint
must end with the same weights (same optimiser moments, scheduler, RNG and data position) step for step.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from tests.backends.train.conftest import launch

from arpo_backends.checkpoint import CheckpointStore

pytestmark = pytest.mark.slow

STEPS = 4


def _config(backend: str) -> dict[str, Any]:
    config: dict[str, Any] = {"model": "tiny", "backend": backend, "optim": {"lr": 1e-3, "warmup_steps": 3}}
    if backend == "deepspeed":
        config["deepspeed"] = {"zero_stage": 3}
    return config


def _close(a: dict[str, float], b: dict[str, float]) -> None:
    assert set(a) == set(b)
    for name in a:
        assert a[name] == pytest.approx(b[name], rel=1e-5, abs=1e-5), name


@pytest.mark.parametrize(("backend", "where"), [("fsdp", "step"), ("deepspeed", "save")])
def test_killed_rank_then_resume_matches_uninterrupted(tmp_path: Path, backend: str, where: str) -> None:
    full = launch(tmp_path, "full", {"config": _config(backend), "steps": STEPS}, nproc=2)

    ckpt = tmp_path / "ckpt"
    spec = {"config": _config(backend), "steps": STEPS, "save_every": 1, "checkpoints": str(ckpt)}
    # "step": rank 1 dies before step 2 (checkpoints 1 and 2 complete); "save": it dies while writing checkpoint 2,
    # after its shards are written but before the commit (only checkpoint 1 is complete).
    killed = launch(tmp_path, "killed", {**spec, "kill": {"rank": 1, "step": 2, "where": where}}, nproc=2, check=False)
    assert killed.returncode != 0
    store = CheckpointStore(ckpt)
    latest = store.latest()
    assert latest is not None
    expected = 2 if where == "step" else 1
    assert latest.name == f"step-{expected:06d}"
    state = json.loads((latest / "trainer_state.json").read_text())
    assert state["policy_version"] == expected and state["world_size"] == 2 and state["backend"] == backend

    resumed = launch(tmp_path, "resumed", {**spec, "resume": str(ckpt)}, nproc=2)
    assert [m["step"] for m in resumed.metrics] == list(range(expected, STEPS))
    for got, want in zip(resumed.metrics, full.metrics[expected:], strict=True):
        assert got["loss"] == pytest.approx(want["loss"], rel=1e-5, abs=1e-7)
        assert got["lr"] == pytest.approx(want["lr"], rel=1e-9)
    _close(resumed.weights, full.weights)
    assert store.latest() == store.path_for(STEPS)


def test_resume_with_the_other_backend_is_refused(tmp_path: Path) -> None:
    ckpt = tmp_path / "ckpt"
    launch(tmp_path, "fsdp", {"config": _config("fsdp"), "steps": 1, "save_every": 1, "checkpoints": str(ckpt)})
    run = launch(tmp_path, "ds", {"config": _config("deepspeed"), "steps": 2, "resume": str(ckpt)}, check=False)
    assert run.returncode != 0
    assert "was saved by the fsdp backend, not deepspeed; resume with --backend fsdp" in run.log
