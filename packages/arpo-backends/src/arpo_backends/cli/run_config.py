"""The config of an ``arpo train`` run: core's ``ArpoConfig`` plus the trainer, the SFT cold start and inference.

``arpo train`` with no ``--config`` starts from the *embedded default* (``embedded_default.toml`` beside this
file: SmolLM2-135M-Instruct, the bundled tool task, a short SFT cold start then ARPO on FSDP, sized to finish on a
2-core CPU); with ``--config FILE`` it starts from the paper's defaults and the file. ``--set key=value`` and the
command's flags apply on top, in that order. The resolved config is printed at start and saved in the run folder.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from arpo_backends.train.config import TrainerConfig
from arpo_core.config import ArpoConfig, load_config

__all__ = ["EMBEDDED_DEFAULT", "InferenceConfig", "RunConfig", "SFTStage", "load_run_config"]

EMBEDDED_DEFAULT = Path(__file__).with_name("embedded_default.toml")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)


class SFTStage(_Frozen):
    """The supervised cold start before RL (the paper's pipeline starts with one)."""

    enabled: bool = False
    """Run it. Off for your own runs (cold-start your model once with ``arpo sft`` instead); on in the default."""
    demos: str = "builtin"
    """Demonstrations file (``arpo sft`` formats), or ``builtin``: generated for a ``builtin:`` dataset that
    registers a generator (``arpo.demos`` entry points; the default task does, with real tool outputs)."""
    epochs: int = Field(default=2, ge=1)
    batch_size: int = Field(default=16, ge=1)
    """Demonstrations per update."""
    lr: float = Field(default=2e-5, gt=0.0)
    max_length: int = Field(default=1024, ge=1)
    """Demonstrations longer than this many tokens are dropped."""


class InferenceConfig(_Frozen):
    """Where rollouts come from, and how new weights get there."""

    rollout_urls: tuple[str, ...] = ()
    """Running vLLM-compatible servers (``http://host:8000/v1``); empty: arpo starts its CPU server itself."""
    served_model_name: str | None = None
    """The model name the servers know; default: ``policy`` for arpo's own server, the trainer's model otherwise."""
    weight_sync: Literal["auto", "cpu_server", "vllm_lora", "vllm_nccl", "none"] = "auto"
    """How weights reach the servers after each step. ``auto``: ``cpu_server`` for arpo's server (started by the
    run or given); for other servers ``vllm_lora`` with LoRA, else ``vllm_nccl``."""
    server_threads: int | None = Field(default=None, ge=1)
    """torch threads of the CPU server arpo starts (default: torch's choice)."""
    server_prefix_cache_tokens: int = Field(default=16384, ge=0)
    """Prefix cache of the CPU server arpo starts, in tokens (``arpo serve --prefix-cache-tokens``; 0: off): agent
    turns and branches re-send their context, and this skips its prefill (~46 KB per token for SmolLM2-135M)."""
    eval_concurrency: int = Field(default=16, ge=1)
    """Evaluation episodes in flight at once."""


class RunConfig(ArpoConfig):
    """Everything ``arpo train`` uses; ``arpo train --print-config`` shows it with every default."""

    trainer: TrainerConfig = TrainerConfig()
    """The backend, model, optimiser and objective (arpo-backends' ``TrainerConfig``)."""
    sft: SFTStage = SFTStage()
    inference: InferenceConfig = InferenceConfig()
    tools: str | None = None
    """An ``mcpServers`` JSON file; ``None``: arpo's own python and search tools."""
    tool_options: dict[str, list[str]] = Field(default_factory=dict)
    """arpo's own tools only: ``-o key=value`` options per tool server, e.g. ``{search = ["top_k=1"]}``."""


def load_run_config(path: str | Path | None, overrides: list[str], flags: Mapping[str, Any] | None = None) -> RunConfig:
    """The run config from ``path`` (None: the embedded default), ``--set`` overrides, then the flags."""
    sets = [f"{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in (flags or {}).items() if v is not None]
    return load_config(path if path is not None else EMBEDDED_DEFAULT, [*overrides, *sets], model=RunConfig)


def dump_toml(config: RunConfig) -> str:
    """The config as TOML (every option), for the run folder and the start-of-run printout."""
    data = config.model_dump(mode="json")
    lines: list[str] = []

    def emit(table: str, values: Mapping[str, Any]) -> None:
        scalars = {k: v for k, v in values.items() if not isinstance(v, dict)}
        if scalars or not table:
            if table:
                lines.append(f"\n[{table}]")
            for key, value in scalars.items():
                if value is not None:
                    lines.append(f"{key} = {_toml_value(value)}")
        for key, value in values.items():
            if isinstance(value, dict):
                emit(f"{table}.{key}" if table else key, value)

    emit("", data)
    return "\n".join(lines).lstrip("\n") + "\n"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return repr(value) if isinstance(value, float) else str(value)
