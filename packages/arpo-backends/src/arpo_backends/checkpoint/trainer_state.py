"""``TrainerState``: the counters a trainer needs to continue exactly where it stopped, as ``trainer_state.json``."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from arpo_backends.checkpoint._fs import atomic_write_bytes
from arpo_backends.checkpoint.errors import CheckpointError

__all__ = ["TrainerState"]

_STATE_FORMAT = 1


@dataclass
class TrainerState:
    """Where training stands at a checkpoint; JSON only (no pickles), written atomically by rank 0.

    ``step``: optimizer steps done; ``policy_version``: the version of the published policy (for staleness of
    rollouts); ``samples_seen``: prompts consumed; ``data_position``: whatever the data loader needs to resume (epoch,
    index in the shuffled order, sampler seed...); ``world_size`` and ``backend`` (``"fsdp"``, ``"deepspeed"``) of the
    run that saved it; ``extra``: anything else JSON serialisable.
    """

    FILENAME: ClassVar[str] = "trainer_state.json"

    step: int
    policy_version: int
    samples_seen: int
    data_position: dict[str, Any]
    world_size: int
    backend: str
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("step", "policy_version", "samples_seen", "world_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"TrainerState.{name} is an integer >= 0, got {value!r}")
        if not isinstance(self.data_position, dict) or not isinstance(self.extra, dict):
            raise ValueError("TrainerState.data_position and TrainerState.extra are dicts")
        if not isinstance(self.backend, str):
            raise ValueError(f"TrainerState.backend is a string, got {self.backend!r}")

    def to_dict(self) -> dict[str, Any]:
        return {"format_version": _STATE_FORMAT, **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainerState:
        """Build from ``to_dict()`` output; unknown keys (from a newer writer) are ignored."""
        fields = ("step", "policy_version", "samples_seen", "data_position", "world_size", "backend")
        missing = [name for name in fields if name not in data]
        if missing:
            raise CheckpointError(f"the trainer state lacks {', '.join(missing)}; it was not written by TrainerState.")
        return cls(**{name: data[name] for name in fields}, extra=dict(data.get("extra", {})))

    def save(self, folder: Path) -> Path:
        """Write ``folder/trainer_state.json`` atomically (temp + fsync + rename); returns the file."""
        try:
            text = json.dumps(self.to_dict(), indent=1, sort_keys=True, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise CheckpointError(
                f"the trainer state at step {self.step} is not JSON serialisable ({exc}); keep data_position and "
                "extra to numbers, strings, lists and dicts."
            ) from exc
        path = Path(folder) / self.FILENAME
        atomic_write_bytes(path, (text + "\n").encode())
        return path

    @classmethod
    def load(cls, folder: Path) -> TrainerState:
        """Read ``folder/trainer_state.json``; a missing or invalid file raises ``CheckpointError``."""
        path = Path(folder) / cls.FILENAME
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise CheckpointError(
                f"{path} is missing; this checkpoint has no trainer state (save it with TrainerState.save)."
            ) from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CheckpointError(f"cannot read the trainer state {path} ({exc}); the checkpoint is damaged.") from exc
        if not isinstance(data, dict):
            raise CheckpointError(f"{path} does not hold a JSON object; the checkpoint is damaged.")
        try:
            return cls.from_dict(data)
        except ValueError as exc:
            raise CheckpointError(f"{path} holds an invalid trainer state ({exc}); the checkpoint is damaged.") from exc
