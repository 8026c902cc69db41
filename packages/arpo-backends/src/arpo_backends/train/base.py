"""What the FSDP and DeepSpeed trainers share: core's ``Trainer`` protocol around a backend's model runner.

A backend subclass builds its sharded model and optimiser and implements the ``ModelRunner`` hooks (forward,
backward, update), sharded save/load, and ``full_state`` (the unsharded weights, gathered one tensor at a time so
that no rank ever holds two copies of the model). Everything else — batching, the objective, metrics, the
policy version, checkpoints, weight publishing, HF export — is here, identical for both.

All methods are collective: every rank calls them in the same order (``train_step`` with the same batch).
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from arpo_backends.batching import MicroBatch, TrajectorySample, samples_from_train_batch
from arpo_backends.train.config import TrainerConfig
from arpo_backends.train.dist import DistContext, init_distributed
from arpo_backends.train.lora import hf_state_items
from arpo_backends.train.model import load_reference, model_folder
from arpo_backends.train.step import ppo_step

__all__ = ["BaseTrainer", "seed_everything"]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 - resumable code may draw from the legacy global RNG
    torch.manual_seed(seed)


class BaseTrainer(ABC):
    """A policy, its optimiser and scheduler on this rank; implements ``arpo_core.runtime.Trainer``."""

    backend_name: str = ""

    def __init__(self, config: TrainerConfig, ctx: DistContext | None = None) -> None:
        self.config = config
        self.ctx = ctx or init_distributed()
        seed_everything(config.seed)
        self.model_folder = model_folder(config)
        self._version = 0
        self.samples_seen = 0
        self.reference: nn.Module | None = None
        ref = load_reference(config)
        if ref is not None:
            self.reference = ref.to(self.ctx.device)
        self.pad_token_id = 0

    # -- the Trainer protocol ------------------------------------------------------------------------------------
    @property
    def policy_version(self) -> int:
        return self._version

    def train_step(self, batch: Any) -> Mapping[str, float]:
        """One step on a core ``TrainBatch`` (the same on every rank)."""
        return self.train_samples(samples_from_train_batch(batch))

    def train_samples(self, samples: Sequence[TrajectorySample]) -> dict[str, float]:
        """One step on trajectory samples (for callers that build them directly)."""
        self.policy.train()
        metrics = ppo_step(self, samples, self.config, self.ctx, device=self.ctx.device, pad_token_id=self.pad_token_id)
        self._version += 1
        self.samples_seen += len(samples)
        metrics["policy_version"] = float(self._version)
        return metrics

    # -- ModelRunner ---------------------------------------------------------------------------------------------
    def logits(self, mb: MicroBatch) -> torch.Tensor:
        out = self.forward_module(
            input_ids=mb.input_ids, attention_mask=mb.attention_mask, position_ids=mb.position_ids
        )
        return out.logits  # type: ignore[no-any-return]

    def reference_logits(self, mb: MicroBatch) -> torch.Tensor | None:
        if self.config.loss.kl_coef <= 0:
            return None
        with torch.no_grad():
            kwargs = {"input_ids": mb.input_ids, "attention_mask": mb.attention_mask, "position_ids": mb.position_ids}
            if self.reference is not None:
                return self.reference(**kwargs).logits  # type: ignore[no-any-return]
            with self.unwrapped.disable_adapter():  # type: ignore[operator]
                return self.forward_module(**kwargs).logits  # type: ignore[no-any-return]

    @abstractmethod
    def backward(self, loss: torch.Tensor) -> None: ...

    @abstractmethod
    def update(self) -> tuple[float, float]: ...

    # -- what a backend provides ---------------------------------------------------------------------------------
    @property
    @abstractmethod
    def policy(self) -> nn.Module:
        """The module whose ``train()``/``eval()`` mode matters."""

    @property
    @abstractmethod
    def forward_module(self) -> Any:
        """What to call for a forward pass (the FSDP module or the DeepSpeed engine)."""

    @property
    @abstractmethod
    def unwrapped(self) -> nn.Module:
        """The Hugging Face (or peft) model inside the wrappers."""

    @abstractmethod
    def raw_state(self) -> Iterator[tuple[str, torch.Tensor]]:
        """Every entry of the unwrapped model's state dict, unsharded, on CPU on rank 0 (collective; other ranks
        get each tensor too or an empty placeholder — only rank 0 may use the values)."""

    @abstractmethod
    def save_shards(self, folder: Path) -> None:
        """Model, optimiser and scheduler state of this rank into ``folder`` (collective)."""

    @abstractmethod
    def load_shards(self, folder: Path) -> None: ...

    # -- weights -------------------------------------------------------------------------------------------------
    def full_state(self) -> Iterator[tuple[str, torch.Tensor]]:
        """Hugging Face names and full tensors of the policy (LoRA merged), yielded on every rank (collective)."""
        lora = self.config.lora
        scaling = lora.alpha / lora.rank if lora is not None else None
        return hf_state_items(self.raw_state(), lora_scaling=scaling)

    def export_hf(self, folder: Path) -> Path:
        """The policy as a Hugging Face folder (config, safetensors, tokenizer) that ``from_pretrained`` loads."""
        from arpo_backends.train.export import export_hf

        return export_hf(self, folder)
