"""Two ranks on gloo write into one staging folder; rank 0 commits; both ranks resume from the result."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

WORKER = Path(__file__).with_name("ckpt_dist_worker.py")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_two_ranks_write_rank0_commits(tmp_path: Path) -> None:
    pytest.importorskip("torch.distributed.checkpoint")
    import torch.distributed as dist

    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available")
    root, out = tmp_path / "ckpt", tmp_path / "out"
    out.mkdir()
    world = 2
    base = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()), "WORLD_SIZE": str(world)}
    procs = [
        subprocess.Popen(
            [sys.executable, str(WORKER), str(root), str(out)],
            env={**base, "RANK": str(rank), "LOCAL_RANK": str(rank)},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for rank in range(world)
    ]
    try:
        logs = [proc.communicate(timeout=240)[0] for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    for rank, proc in enumerate(procs):
        assert proc.returncode == 0, f"rank {rank} exited with {proc.returncode}:\n{logs[rank][-3000:]}"

    expected_files = [
        "extra-rank0.bin",
        "extra-rank1.bin",
        "model/.metadata",
        "model/__0_0.distcp",
        "model/__1_0.distcp",
        "rng-rank0.pt",
        "rng-rank1.pt",
        "trainer_state.json",
    ]
    for rank in range(world):
        result = json.loads((out / f"result-rank{rank}.json").read_text())
        for step in ("1", "2"):
            seen = result["steps"][step]
            assert seen["resolved"] == f"step-00000{step}"
            assert seen["files"] == expected_files  # both ranks' files, in one manifest
            assert seen["dcp_ok"] and seen["rng_ok"]
            assert seen["trainer_step"] == int(step)
        assert result["on_disk"] == ["latest", "step-000002"]  # keep_last=1 pruned step 1
