"""What the FSDP and DeepSpeed trainers share: core's ``Trainer`` protocol around a backend's model runner.

A backend subclass builds its sharded model and optimiser and implements the ``ModelRunner`` hooks (forward,
backward, update), sharded save/load, and ``full_state`` (the unsharded weights, gathered one tensor at a time so
that no rank ever holds two copies of the model). Everything else — batching, the objective, metrics, the
policy version, checkpoints, weight publishing, HF export — is here, identical for both.

All methods are collective: every rank calls them in the same order (``train_step`` with the same batch).
"""

from __future__ import annotations

import random
import shutil
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from arpo_backends.batching import MicroBatch, TrajectorySample, samples_from_train_batch
from arpo_backends.batching.prefix import PrefixPacking
from arpo_backends.train.config import TrainerConfig
from arpo_backends.train.dist import DistContext, init_distributed
from arpo_backends.train.lora import hf_state_items
from arpo_backends.train.model import load_reference, model_folder
from arpo_backends.train.prefix_sharing import (
    PACKABLE_ATTENTION,
    attention_break_even,
    choose_packing,
    packed_token_stats,
    packing_attention,
)
from arpo_backends.train.selective import LogitSelector, predictor_mask, token_stats
from arpo_backends.train.step import ppo_step, sft_step

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
        self.sft_steps = 0
        self.reference: nn.Module | None = None
        ref = load_reference(config)
        if ref is not None:
            self.reference = ref.to(self.ctx.device)
        self.pad_token_id = 0
        self._selector: LogitSelector | None = None
        self._ref_selector: LogitSelector | None = None
        self._packing_of: tuple[MicroBatch, PrefixPacking | None] | None = None
        self._publisher: Any = None
        self._publisher_target: Any = None

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

    def sft_step(self, samples: Sequence[TrajectorySample]) -> dict[str, float]:
        """One SFT update (token-mean NLL on the loss mask) over ``samples``, the same list on every rank.

        SFT updates do not advance ``policy_version`` (it counts RL steps); ``sft_steps`` counts them."""
        self.policy.train()
        metrics = sft_step(self, samples, self.config, self.ctx, device=self.ctx.device, pad_token_id=self.pad_token_id)
        self.sft_steps += 1
        self.samples_seen += len(samples)
        return metrics

    # -- ModelRunner ---------------------------------------------------------------------------------------------
    def _forward(self, module: Any, mb: MicroBatch) -> Any:
        return module(input_ids=mb.input_ids, attention_mask=mb.attention_mask, position_ids=mb.position_ids)

    def _prefix_packing(self, mb: MicroBatch) -> PrefixPacking | None:
        """The prefix-trie layout of ``mb`` when ``share_prefixes`` is on and it pays (``choose_packing``), else
        ``None`` (the padded forward). Remembered for the micro-batch last asked about (policy, then reference)."""
        if not self.config.share_prefixes:
            return None
        if self._packing_of is not None and self._packing_of[0] is mb:
            return self._packing_of[1]
        packing = choose_packing(
            mb.input_ids,
            mb.attention_mask,
            max_tokens=self.config.share_prefixes_max_tokens,
            attention=packing_attention(self.unwrapped, mb.input_ids.device),
            break_even=attention_break_even(self.unwrapped),
        )
        if packing is not None:
            packing = packing.to(mb.input_ids.device)
        self._packing_of = (mb, packing)
        return packing

    def _selected_stats(
        self, module: Any, model: nn.Module, selector: LogitSelector, mb: MicroBatch, *, entropy: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``token_stats`` of ``module`` (calling ``model``: the policy, or the frozen reference) on ``mb``,
        prefix-shared or padded."""
        temperature = self.config.temperature
        packing = self._prefix_packing(mb)
        attention = packing_attention(model, mb.input_ids.device)
        if packing is None or attention not in PACKABLE_ATTENTION:
            with selector.select(predictor_mask(mb.loss_mask)):
                logits = self._forward(module, mb).logits
            return token_stats(logits, mb.input_ids, mb.loss_mask, temperature=temperature, entropy=entropy)
        return packed_token_stats(
            module,
            selector,
            packing,
            mb.input_ids,
            mb.loss_mask,
            attention=attention,
            temperature=temperature,
            entropy=entropy,
        )

    def token_stats(self, mb: MicroBatch, *, entropy: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(B, T)`` logprobs (and entropies) of the loss tokens under the policy; the LM head runs only at their
        predictor positions (``selective``), and tokens shared by several rows run once (``share_prefixes``)."""
        if self._selector is None:
            self._selector = LogitSelector(self.unwrapped)
        return self._selected_stats(self.forward_module, self.unwrapped, self._selector, mb, entropy=entropy)

    def reference_log_probs(self, mb: MicroBatch) -> torch.Tensor | None:
        """The KL reference's logprobs (the frozen initial model, or the LoRA model with adapters off)."""
        if self.config.loss.kl_coef <= 0:
            return None
        with torch.no_grad():
            if self.reference is not None:
                if self._ref_selector is None:
                    self._ref_selector = LogitSelector(self.reference)
                logp, _ = self._selected_stats(self.reference, self.reference, self._ref_selector, mb, entropy=False)
            else:
                if self._selector is None:
                    self._selector = LogitSelector(self.unwrapped)
                with self.unwrapped.disable_adapter():  # type: ignore[operator]
                    logp, _ = self._selected_stats(
                        self.forward_module, self.unwrapped, self._selector, mb, entropy=False
                    )
        return logp

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

    # -- checkpoints --------------------------------------------------------------------------------------------
    @property
    def global_step(self) -> int:
        """Updates done so far, SFT and RL together (names the checkpoint folders)."""
        return self.sft_steps + self._version

    def save(self, path: Path, *, data_position: Mapping[str, Any] | None = None, keep_last: int | None = 3) -> Path:
        """A checkpoint of this step under the checkpoint root ``path`` (``path/step-NNNNNN``), committed atomically.

        Model, optimiser and scheduler (sharded, by the backend), each rank's RNG, and the trainer state (policy
        version, SFT steps, samples seen, ``data_position`` for the data loader). Collective."""
        from arpo_backends.checkpoint import CheckpointStore, TrainerState, save_rng

        store = CheckpointStore(path, keep_last=keep_last)
        step = self.global_step
        if self.ctx.is_main:  # leftovers of an interrupted save of this same step must not be committed
            shutil.rmtree(store.staging_path(step), ignore_errors=True)
        self.ctx.barrier()
        folder = store.staging(step)
        self.save_shards(folder)
        save_rng(folder, self.ctx.rank, world_size=self.ctx.world_size)
        if self.ctx.is_main:
            TrainerState(
                step=step,
                policy_version=self._version,
                samples_seen=self.samples_seen,
                data_position=dict(data_position or {}),
                world_size=self.ctx.world_size,
                backend=self.backend_name,
                extra={"sft_steps": self.sft_steps, "config": self.config.model_dump(mode="json")},
            ).save(folder)
        self.ctx.barrier()
        if self.ctx.is_main:
            store.commit(step, {"backend": self.backend_name, "world_size": self.ctx.world_size})
        self.ctx.barrier()
        return store.path_for(step)

    def load(self, path: Path) -> dict[str, Any]:
        """Resume from a checkpoint folder, or the newest complete one under a checkpoint root; returns the saved
        ``data_position``. Collective."""
        from arpo_backends.checkpoint import CheckpointStore, TrainerState, load_rng

        path = Path(path)
        folder = path if (path / "manifest.json").is_file() else CheckpointStore(path).resolve("latest")
        CheckpointStore(folder.parent).verify(folder)
        state = TrainerState.load(folder)
        if state.backend != self.backend_name:
            raise ValueError(
                f"{folder} was saved by the {state.backend} backend, not {self.backend_name}; resume with "
                f"--backend {state.backend} (or export it to Hugging Face format and start from that)."
            )
        self.load_shards(folder)
        load_rng(folder, self.ctx.rank, world_size=self.ctx.world_size)
        self._version = state.policy_version
        self.samples_seen = state.samples_seen
        self.sft_steps = int(state.extra.get("sft_steps", 0))
        self.ctx.barrier()
        return dict(state.data_position)

    # -- weights -------------------------------------------------------------------------------------------------
    def full_state(self) -> Iterator[tuple[str, torch.Tensor]]:
        """Hugging Face names and full tensors of the policy (LoRA merged), yielded on every rank (collective)."""
        lora = self.config.lora
        scaling = lora.alpha / lora.rank if lora is not None else None
        return hf_state_items(self.raw_state(), lora_scaling=scaling)

    def publish_weights(self, target: Any) -> Sequence[str]:
        """Push the current policy to inference (core's ``WeightTarget``); collective, returns rank 0's log lines.

        Full weights (``cpu_server``, ``vllm_nccl``) are gathered one tensor at a time on every rank and streamed
        to rank 0's publisher in buckets; ``vllm_lora`` sends only the adapter (LoRA runs only). A failure is raised
        on every rank as ``PublishError``, so the ranks never disagree about what inference serves."""
        from arpo_backends.publish import PublishError, iter_buckets, make_publisher, needs_weights

        if not needs_weights(target):
            return []
        if target.kind == "vllm_lora" and self.config.lora is None:
            raise ValueError(
                "the vllm_lora target hot-loads LoRA adapters but this run fine-tunes every weight; train with "
                "lora (e.g. --lora-rank 16) or publish through cpu_server / vllm_nccl."
            )
        error: str | None = None
        lines: list[str] = []
        if self.ctx.is_main and (self._publisher is None or self._publisher_target != target):
            if self._publisher is not None:
                self._publisher.close()
            self._publisher, self._publisher_target = make_publisher(target), target
        if target.kind == "vllm_lora":
            source: Any = _AdapterFromState(self)
        else:
            source = iter_buckets(self.full_state())
        if self.ctx.is_main:
            try:
                lines = list(self._publisher.publish(source, version=self._version))
            except PublishError as err:
                error = str(err)
        else:
            if isinstance(source, _AdapterFromState):
                source.drain()
            else:
                deque(source, maxlen=0)  # take part in every gather
        error = self.ctx.broadcast_object(error)
        if error is not None:
            raise PublishError(error)
        return lines

    @property
    def served_model_name(self) -> str | None:
        """The name clients must request after a LoRA publish (a new adapter name per version), else None."""
        return self._publisher.model_name if self._publisher is not None else None

    def close(self) -> None:
        """Release what the backend holds outside this process (collective: ends with a barrier)."""
        if self._publisher is not None:
            self._publisher.close()
            self._publisher = None
        self.ctx.barrier()

    def export_hf(self, folder: Path) -> Path:
        """The policy as a Hugging Face folder (config, safetensors, tokenizer) that ``from_pretrained`` loads."""
        from arpo_backends.train.export import export_hf

        return export_hf(self, folder)


class _AdapterFromState:
    """``AdapterSource`` of a LoRA run: the adapter tensors gathered from the (possibly sharded) model, written as
    peft's ``adapter_model.safetensors`` + ``adapter_config.json`` (what vLLM's ``/v1/load_lora_adapter`` reads).

    Gathering is collective, so rank 0's ``save_adapter`` and the other ranks' ``drain`` walk the same tensors."""

    def __init__(self, trainer: BaseTrainer) -> None:
        self.trainer = trainer

    def _adapter_state(self) -> dict[str, torch.Tensor]:
        state = {}
        for name, tensor in self.trainer.raw_state():
            if ".lora_A." in name or ".lora_B." in name:
                key = name.replace(".default.", ".")
                for prefix in ("module.", "_orig_mod."):
                    key = key.removeprefix(prefix)
                state[key] = tensor.contiguous()
        return state

    def drain(self) -> None:
        self._adapter_state()

    def save_adapter(self, folder: Path) -> None:
        from safetensors.torch import save_file

        state = self._adapter_state()
        folder.mkdir(parents=True, exist_ok=True)
        save_file(state, str(folder / "adapter_model.safetensors"))
        peft_config: Any = getattr(self.trainer.unwrapped, "peft_config")["default"]  # noqa: B009
        peft_config.save_pretrained(str(folder))
