"""``TrainerConfig``: every knob of the trainers, with the paper's value as the default (spec §4).

The same config drives both backends, so ``--backend fsdp`` and ``--backend deepspeed`` train the same model with
the same optimiser on the same micro-batches; only how parameters are sharded differs. Frozen and
``extra="forbid"`` like core's configs: a typo in a run file is an error, not a silently ignored option.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from arpo_backends.loss.config import LossConfig

__all__ = [
    "BACKENDS",
    "DeepSpeedOptions",
    "FSDPOptions",
    "LoraOptions",
    "OptimConfig",
    "TrainerConfig",
]

BACKENDS = ("fsdp", "deepspeed")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)


class OptimConfig(_Frozen):
    """AdamW with a constant learning rate after an optional linear warm-up (the paper's optimiser)."""

    lr: float = Field(default=1e-6, gt=0.0)
    """Learning rate. Paper: 1e-6 (RL); SFT cold starts usually use 1e-5 to 2e-5."""
    weight_decay: float = Field(default=0.01, ge=0.0)
    """AdamW weight decay. Paper: 0.01."""
    betas: tuple[float, float] = (0.9, 0.999)
    """AdamW betas (torch's defaults; verl's)."""
    eps: float = Field(default=1e-8, gt=0.0)
    """AdamW epsilon."""
    grad_clip: float | None = Field(default=1.0, gt=0.0)
    """Clip the global gradient norm to this (paper: 1.0); ``None`` turns clipping off."""
    warmup_steps: int = Field(default=0, ge=0)
    """Linear warm-up from 0 over this many optimiser updates, then constant. Paper: constant (0)."""


class LoraOptions(_Frozen):
    """LoRA adapters (peft) instead of full fine-tuning."""

    rank: int = Field(default=16, ge=1)
    """r, the adapters' rank."""
    alpha: float = Field(default=32.0, gt=0.0)
    """lora_alpha; the update is scaled by alpha / rank."""
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)
    """Dropout on the adapter input (0 keeps RL's logprobs deterministic)."""
    target_modules: tuple[str, ...] | Literal["all-linear"] = "all-linear"
    """Modules that get adapters: peft's ``all-linear`` or a list of module names (``q_proj``, ``v_proj``, ...)."""


class FSDPOptions(_Frozen):
    """PyTorch FSDP2 (``fully_shard``)."""

    reshard_after_forward: bool = True
    """Free gathered parameters after each layer's forward (ZeRO-3-like); False keeps them until backward
    (ZeRO-2-like)."""


class DeepSpeedOptions(_Frozen):
    """DeepSpeed ZeRO. arpo writes the DeepSpeed config from these fields unless ``config_file`` is given."""

    zero_stage: Literal[0, 1, 2, 3] = 2
    """ZeRO stage: 1 shards optimizer state, 2 also gradients, 3 also parameters."""
    offload_optimizer: bool = False
    """Keep optimizer state on CPU and step it there (DeepSpeed's CPU Adam; builds a CPU op on first use)."""
    config_file: Path | None = None
    """A DeepSpeed JSON config of your own. Its batch-size keys are overridden (arpo schedules micro-batches itself:
    ``managed_gradient_accumulation`` off); its optimizer section, if any, replaces ``optim``."""


class TrainerConfig(_Frozen):
    """What a backend needs to build and step the policy."""

    backend: str = "fsdp"
    """``fsdp`` (PyTorch FSDP2) or ``deepspeed`` (ZeRO 1/2/3); any name of the ``arpo.backends`` entry points."""
    model: str = "smollm2-135m-instruct"
    """A local Hugging Face folder or a built-in name (``smollm2-135m-instruct``, ``tiny``); never downloaded."""
    precision: Literal["fp32", "bf16"] = "fp32"
    """Parameters in fp32 always; ``bf16`` computes forward/backward in bfloat16 (mixed precision, GPU)."""
    seed: int = 0
    """Seeds torch, numpy and ``random`` on every rank (LoRA initialisation, dropout)."""
    temperature: float = Field(default=1.0, gt=0.0)
    """Sampling temperature of the rollouts: logits are divided by it before logprobs (spec §4: 1.0)."""
    micro_batch_tokens: int = Field(default=8192, ge=1)
    """Token budget of one forward/backward (padded rows × length); trajectories are never split."""
    mini_batch_groups: int | None = Field(default=None, ge=1)
    """Prompt groups per optimiser update; a step's groups are cut into mini-batches of this many (paper: 16 of
    128). ``None``: one update per step."""
    ppo_epochs: int = Field(default=1, ge=1)
    """Passes over the step's data (paper: 1)."""
    share_prefixes: bool = True
    """Run the tokens that several rows of a micro-batch share (a group's prompt, ARPO's branch prefixes) once: the
    rows become a token trie (``batching.prefix``), attended run by run on a CPU (an SDPA model is switched to
    arpo's ``arpo_tree`` attention, ``train.tree_attention``) or through a dense tree mask (on a GPU; eager
    attention); used when a cost model says it is cheaper than the padded rows (``train.prefix_sharing``). The
    same logprobs and gradients up to float rounding. Not in the paper (an efficiency measure); False always runs
    the padded rows."""
    share_prefixes_max_tokens: int = Field(default=8192, ge=1)
    """Largest trie (tokens) run with a dense (N, N) tree mask (on a GPU, or with eager attention); bigger ones run
    padded. The mask costs N² bytes plus SDPA's transient float copy (4·N²): 320 MiB at 8192."""
    gradient_checkpointing: bool = False
    """Recompute activations in backward (less memory, about a third more compute)."""
    optim: OptimConfig = OptimConfig()
    loss: LossConfig = LossConfig()
    lora: LoraOptions | None = None
    """LoRA adapters; ``None`` fine-tunes every parameter. With ``loss.kl_coef > 0`` the KL reference is the model
    with its adapters switched off under LoRA, else a frozen, unsharded copy of the initial model on each rank."""
    fsdp: FSDPOptions = FSDPOptions()
    deepspeed: DeepSpeedOptions = DeepSpeedOptions()
