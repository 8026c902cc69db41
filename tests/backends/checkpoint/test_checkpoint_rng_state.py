"""RNG capture/restore round trip, per-rank RNG files (and a different rank count), and TrainerState."""

from __future__ import annotations

import json
import random
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from arpo_backends.checkpoint import (
    CheckpointError,
    CheckpointStore,
    RngStateWarning,
    TrainerState,
    capture_rng_state,
    load_rng,
    restore_rng_state,
    rng_file,
    save_rng,
)


def draw() -> dict[str, Any]:
    """Numbers from every RNG the state covers, including numpy's cached Gaussian (odd count of normals)."""
    return {
        "python": [random.random() for _ in range(5)] + [random.getrandbits(64)],
        "numpy": np.random.rand(5).tolist() + np.random.standard_normal(3).tolist(),  # noqa: NPY002
        "torch": torch.rand(5).tolist() + torch.randn(3).tolist() + torch.randint(0, 10**9, (3,)).tolist(),
    }


def test_capture_draw_restore_draw_is_identical() -> None:
    random.seed(1)
    np.random.seed(2)  # noqa: NPY002
    torch.manual_seed(3)
    np.random.standard_normal(1)  # noqa: NPY002  (leave a cached Gaussian in numpy's state)
    state = capture_rng_state()
    first = draw()
    restore_rng_state(state)
    second = draw()
    assert first == second
    assert draw() != first  # the generators moved on: the equality above is not vacuous


def test_state_survives_torch_save_with_weights_only(tmp_path: Path) -> None:
    torch.manual_seed(7)
    state = capture_rng_state()
    expected = draw()
    torch.save(state, tmp_path / "state.pt")
    draw()
    restore_rng_state(torch.load(tmp_path / "state.pt", weights_only=True))
    assert draw() == expected


def test_save_and_load_per_rank(tmp_path: Path) -> None:
    streams: dict[int, dict[str, Any]] = {}
    for rank in (0, 1):
        torch.manual_seed(100 + rank)
        random.seed(100 + rank)
        path = save_rng(tmp_path, rank, world_size=2)
        assert path == rng_file(tmp_path, rank) == tmp_path / f"rng-rank{rank}.pt"
        streams[rank] = draw()
    assert streams[0] != streams[1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rng-rank0.pt", "rng-rank1.pt"]  # no temp files left
    for rank in (1, 0):
        draw()
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert load_rng(tmp_path, rank, world_size=2) is True
        assert draw() == streams[rank]


def test_resuming_two_ranks_state_with_four_ranks_warns_and_continues(tmp_path: Path) -> None:
    streams: dict[int, dict[str, Any]] = {}
    for rank in (0, 1):
        torch.manual_seed(rank)
        save_rng(tmp_path, rank, world_size=2)
        streams[rank] = draw()
    expected_rank1 = streams[1]

    torch.manual_seed(55)
    with pytest.warns(RngStateWarning) as record:
        assert load_rng(tmp_path, 1, world_size=4) is True
    message = str(record[0].message)
    assert "RNG state is saved per rank" in message and "2 rank(s) while this run has 4" in message
    assert "rank 1 restores rank 1's saved state" in message
    assert draw() == expected_rank1

    before = capture_rng_state()
    fresh = draw()
    restore_rng_state(before)
    with pytest.warns(RngStateWarning, match="rank 3 has no saved state and keeps its current"):
        assert load_rng(tmp_path, 3, world_size=4) is False
    assert draw() == fresh  # untouched

    with pytest.raises(CheckpointError, match=r"RNG state is saved per rank .* holds the states of 2 rank"):
        load_rng(tmp_path, 3, world_size=4, strict=True)


def test_no_rng_state_at_all(tmp_path: Path) -> None:
    with pytest.warns(RngStateWarning, match=r"holds no RNG state \(no rng-rank\*\.pt file\)"):
        assert load_rng(tmp_path, 0, world_size=1) is False
    with pytest.raises(CheckpointError, match="holds no RNG state"):
        load_rng(tmp_path, 0, world_size=1, strict=True)


def test_damaged_rng_file_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "rng-rank0.pt").write_bytes(b"not a torch file")
    with pytest.raises(CheckpointError, match=r"cannot read the RNG state .*rng-rank0\.pt"):
        load_rng(tmp_path, 0, world_size=1)
    with pytest.raises(CheckpointError, match="not a capture_rng_state"):
        restore_rng_state({"torch": torch.get_rng_state()})


# --------------------------------------------------------------------------- TrainerState
def make_state() -> TrainerState:
    return TrainerState(
        step=12,
        policy_version=4,
        samples_seen=1536,
        data_position={"epoch": 1, "index": 512, "seed": 42},
        world_size=2,
        backend="fsdp",
        extra={"lr": 1e-6, "notes": ["a", "b"]},
    )


def test_trainer_state_round_trip(tmp_path: Path) -> None:
    state = make_state()
    path = state.save(tmp_path)
    assert path == tmp_path / "trainer_state.json"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["trainer_state.json"]
    data = json.loads(path.read_text())
    assert data["format_version"] == 1 and data["data_position"] == {"epoch": 1, "index": 512, "seed": 42}
    assert TrainerState.load(tmp_path) == state
    # unknown keys from a newer writer are ignored
    path.write_text(json.dumps({**data, "future_field": 1}))
    assert TrainerState.load(tmp_path) == state


def test_trainer_state_errors(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"trainer_state\.json is missing"):
        TrainerState.load(tmp_path)
    (tmp_path / "trainer_state.json").write_text("{")
    with pytest.raises(CheckpointError, match="cannot read the trainer state"):
        TrainerState.load(tmp_path)
    (tmp_path / "trainer_state.json").write_text('{"step": 1}')
    with pytest.raises(CheckpointError, match="lacks policy_version, samples_seen, data_position"):
        TrainerState.load(tmp_path)
    (tmp_path / "trainer_state.json").write_text(json.dumps({**make_state().to_dict(), "step": -1}))
    with pytest.raises(CheckpointError, match=r"invalid trainer state \(TrainerState\.step is an integer >= 0"):
        TrainerState.load(tmp_path)
    bad = make_state()
    bad.extra["tensor"] = torch.zeros(1)
    with pytest.raises(CheckpointError, match="not JSON serialisable"):
        bad.save(tmp_path)
    with pytest.raises(ValueError, match="world_size"):
        TrainerState(1, 1, 1, {}, True, "fsdp")


def test_full_save_and_exact_resume_in_one_process(tmp_path: Path) -> None:
    """Model, optimizer, scheduler, RNG and trainer state through a committed checkpoint: the run continues exactly."""

    def make() -> tuple[torch.nn.Module, torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Dropout(0.5), torch.nn.Linear(8, 1))
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
        return model, opt, torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)

    def train_step(model: torch.nn.Module, opt: torch.optim.Optimizer, sched: Any) -> float:
        x = torch.randn(16, 4)
        noise = float(np.random.rand())  # noqa: NPY002
        loss = (model(x).squeeze(-1) - x.sum(-1) - noise - random.random()).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        return float(loss.item())

    store = CheckpointStore(tmp_path)
    model, opt, sched = make()
    random.seed(0)
    np.random.seed(0)  # noqa: NPY002
    for _ in range(3):
        train_step(model, opt, sched)
    folder = store.staging(3)
    torch.save({"model": model.state_dict(), "optim": opt.state_dict(), "sched": sched.state_dict()}, folder / "s.pt")
    save_rng(folder, 0, world_size=1)
    TrainerState(3, 3, 48, {"index": 48}, 1, "test").save(folder)
    store.commit(3)
    reference = [train_step(model, opt, sched) for _ in range(3)]

    model, opt, sched = make()
    random.seed(999)  # a restarted process starts from other RNG states
    resumed = store.resolve("latest")
    blob = torch.load(resumed / "s.pt", weights_only=True)
    model.load_state_dict(blob["model"])
    opt.load_state_dict(blob["optim"])
    sched.load_state_dict(blob["sched"])
    assert load_rng(resumed, 0, world_size=1)
    assert TrainerState.load(resumed).step == 3
    assert [train_step(model, opt, sched) for _ in range(3)] == reference
