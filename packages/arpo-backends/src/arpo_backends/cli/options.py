"""Command-line options the training commands share (``arpo sft``, ``arpo train``): the launcher's."""

from __future__ import annotations

from typing import Annotated

import typer

__all__ = ["Launcher", "MasterAddr", "MasterPort", "Nnodes", "NodeRank", "NprocPerNode"]

NprocPerNode = Annotated[int, typer.Option(help="Processes (ranks) on this machine; >1 re-runs under the launcher.")]
Nnodes = Annotated[int, typer.Option(help="Machines.")]
NodeRank = Annotated[int, typer.Option(help="This machine's index.")]
MasterAddr = Annotated[str, typer.Option(help="Rendezvous address (machine 0).")]
MasterPort = Annotated[int | None, typer.Option(help="Rendezvous port (default: a free one).")]
Launcher = Annotated[str, typer.Option(help="torchrun or deepspeed.")]
