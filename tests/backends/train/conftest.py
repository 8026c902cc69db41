"""Launching trainer ranks in subprocesses (torchrun with gloo), so no process group leaks into pytest."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from arpo_backends.train.dist import free_port

WORKER = Path(__file__).with_name("_worker.py")


@dataclass
class Run:
    out: Path
    returncode: int
    log: str

    @property
    def metrics(self) -> list[dict[str, Any]]:
        lines = (self.out / "metrics.jsonl").read_text().splitlines()
        return [json.loads(line) for line in lines]

    @property
    def weights(self) -> dict[str, float]:
        return dict(json.loads((self.out / "weights.json").read_text()))


def launch(
    tmp: Path,
    name: str,
    spec: dict[str, Any],
    nproc: int = 1,
    timeout: float = 600,
    check: bool = True,
    launcher: str = "torchrun",
) -> Run:
    out = tmp / name
    out.mkdir(parents=True, exist_ok=True)
    spec = {**spec, "out": str(out)}
    path = out / "spec.json"
    path.write_text(json.dumps(spec))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    if nproc == 1:
        cmd = [sys.executable, str(WORKER), str(path)]
    elif launcher == "deepspeed":
        launcher_bin = str(Path(sys.executable).with_name("deepspeed"))
        cmd = [launcher_bin, "--num_gpus", str(nproc), "--master_port", str(free_port()), str(WORKER), str(path)]
    else:
        cmd = [
            sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc),
            "--master-addr", "127.0.0.1", "--master-port", str(free_port()), str(WORKER), str(path),
        ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    run = Run(out, proc.returncode, proc.stdout + proc.stderr)
    if check and proc.returncode != 0:
        pytest.fail(f"{name} exited {proc.returncode}:\n{run.log[-4000:]}")
    return run
