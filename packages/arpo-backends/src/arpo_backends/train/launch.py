"""One command from laptop to cluster: ``arpo sft|train --nproc-per-node N`` re-runs itself under a launcher.

When the process is not already a rank of a launcher (no ``WORLD_SIZE`` in the environment) and more than one
process is asked for, the same command line is executed again under ``torchrun`` (``torch.distributed.run``) or the
``deepspeed`` launcher, with the rendezvous flags passed through; this process waits and exits with its code.
A single process runs in place (``init_distributed`` makes a world of one).
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

__all__ = ["LaunchOptions", "launch_command", "maybe_relaunch"]

Launcher = Literal["torchrun", "deepspeed"]


@dataclass(frozen=True)
class LaunchOptions:
    nproc_per_node: int = 1
    nnodes: int = 1
    node_rank: int = 0
    master_addr: str = "127.0.0.1"
    master_port: int | None = None
    launcher: Launcher = "torchrun"

    def __post_init__(self) -> None:
        if self.nproc_per_node < 1 or self.nnodes < 1:
            raise ValueError(
                f"--nproc-per-node={self.nproc_per_node} and --nnodes={self.nnodes} must be ≥ 1 "
                "(processes per machine, machines)."
            )
        if not 0 <= self.node_rank < self.nnodes:
            raise ValueError(f"--node-rank={self.node_rank} must be in [0, --nnodes={self.nnodes}).")
        if self.launcher not in ("torchrun", "deepspeed"):
            raise ValueError(f"--launcher={self.launcher!r} is not one of: torchrun, deepspeed.")

    @property
    def distributed(self) -> bool:
        return self.nproc_per_node * self.nnodes > 1


def launch_command(options: LaunchOptions, argv: list[str]) -> list[str]:
    """The launcher command line that runs ``arpo`` with ``argv`` (its sub-command and options) on each rank."""
    from arpo_backends.train.dist import free_port

    port = str(options.master_port or free_port())
    if options.launcher == "deepspeed":
        launcher = str(Path(sys.executable).with_name("deepspeed"))
        return [
            launcher, "--num_nodes", str(options.nnodes), "--num_gpus", str(options.nproc_per_node),
            "--node_rank", str(options.node_rank), "--master_addr", options.master_addr, "--master_port", port,
            "--no_local_rank", "--module", "arpo_core.cli", *argv,
        ]  # fmt: skip
    return [
        sys.executable, "-m", "torch.distributed.run",
        "--nproc-per-node", str(options.nproc_per_node), "--nnodes", str(options.nnodes),
        "--node-rank", str(options.node_rank), "--master-addr", options.master_addr, "--master-port", port,
        "-m", "arpo_core.cli", *argv,
    ]  # fmt: skip


def maybe_relaunch(options: LaunchOptions, argv: list[str] | None = None) -> None:
    """Run the command under the launcher and exit with its code, unless this process should run it itself."""
    if "WORLD_SIZE" in os.environ or not options.distributed:
        return
    args = sys.argv[1:] if argv is None else argv
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    code = subprocess.call(launch_command(options, args), env=env)
    raise SystemExit(code)
