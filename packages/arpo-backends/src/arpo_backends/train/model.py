"""Loading the policy to train: a Hugging Face causal LM, optionally with LoRA adapters (peft).

Parameters are always fp32 (the optimiser's master copy); bf16 is a compute dtype the backends apply. Every rank
seeds torch with ``config.seed`` before the adapters are created, so their initialisation is identical everywhere
and the same as a single process's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from arpo_backends.models.resolve import ModelNotFoundError, resolve_model
from arpo_backends.train.config import LoraOptions, TrainerConfig

__all__ = ["ModelLoadError", "decoder_layers", "load_policy", "load_reference"]


class ModelLoadError(ValueError):
    """The model named in the config cannot be loaded; the message says why and what to do."""


def _load(folder: Path, *, share_prefixes: bool = False) -> nn.Module:
    from transformers import AutoModelForCausalLM

    try:
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    except (OSError, ValueError, KeyError) as err:
        raise ModelLoadError(
            f"cannot load a causal LM from {folder}: {str(err).splitlines()[0]}; pass a Hugging Face folder with "
            "config.json and weights, or a built-in name (smollm2-135m-instruct, tiny)."
        ) from None
    model.config.use_cache = False
    if share_prefixes:  # SDPA, plus run-by-run attention for prefix-shared forwards
        from arpo_backends.train.tree_attention import enable_tree_attention

        enable_tree_attention(model)
    return model


def model_folder(config: TrainerConfig) -> Path:
    try:
        return resolve_model(config.model)
    except ModelNotFoundError as err:
        raise ModelLoadError(str(err)) from None


def load_policy(config: TrainerConfig) -> nn.Module:
    """The trainable model on CPU in fp32 (the backend moves and shards it)."""
    model = _load(model_folder(config), share_prefixes=config.share_prefixes)
    if config.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})  # type: ignore[operator]
    if config.lora is not None:
        torch.manual_seed(config.seed)
        model = _with_lora(model, config.lora)
    return model


def load_reference(config: TrainerConfig) -> nn.Module | None:
    """A frozen copy of the initial policy for the KL penalty; ``None`` when not needed (or LoRA: adapters off)."""
    if config.loss.kl_coef <= 0 or config.lora is not None:
        return None
    model = _load(model_folder(config), share_prefixes=config.share_prefixes)
    model.eval()
    model.requires_grad_(False)
    return model


def _with_lora(model: nn.Module, options: LoraOptions) -> nn.Module:
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError:
        raise ModelLoadError(
            "LoRA needs peft; install it with pip install 'arpo-backends[lora]' or train without lora."
        ) from None
    targets: Any = options.target_modules if isinstance(options.target_modules, str) else list(options.target_modules)
    lora = LoraConfig(
        r=options.rank,
        lora_alpha=options.alpha,  # type: ignore[arg-type]  # peft annotates int; floats work
        lora_dropout=options.dropout,
        target_modules=targets,
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, lora)


def decoder_layers(model: nn.Module) -> list[nn.Module]:
    """The transformer blocks (each becomes one FSDP unit): the longest ``nn.ModuleList`` of the model."""
    lists = [m for m in model.modules() if isinstance(m, nn.ModuleList)]
    if not lists:
        return []
    return list(max(lists, key=lambda m: len(m)))  # type: ignore[arg-type]
