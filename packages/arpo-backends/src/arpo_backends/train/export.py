"""The trained policy as a Hugging Face folder: ``from_pretrained`` (or vLLM, or ``arpo serve``) loads it as is.

Collective: every rank takes part in gathering the weights; rank 0 builds the model from the original config,
loads the gathered (LoRA-merged) state dict, ``save_pretrained``-s it into a temporary folder beside the target,
copies the tokenizer and chat template of the original folder, and renames the folder into place, so a folder at
``folder`` is always complete.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from arpo_backends.train.base import BaseTrainer

__all__ = ["TOKENIZER_FILES", "export_hf"]

TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "generation_config.json",
    "vocab.json",
    "merges.txt",
    "tokenizer.model",
)


def export_hf(trainer: BaseTrainer, folder: Path) -> Path:
    folder = Path(folder)
    main = trainer.ctx.is_main
    state = {name: tensor for name, tensor in trainer.full_state() if main}  # every rank iterates: collective
    if trainer.ctx.is_main:
        _write(trainer.model_folder, state, folder)
    trainer.ctx.barrier()
    return folder


def _write(source: Path, state: dict[str, torch.Tensor], folder: Path) -> None:
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(source)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)  # type: ignore[no-untyped-call]
    missing, unexpected = model.load_state_dict(state, strict=False)
    tied = {"lm_head.weight"} if getattr(config, "tie_word_embeddings", False) else set()
    if unexpected or set(missing) - tied:
        raise ValueError(
            f"the trained state dict does not fit {source}'s architecture (missing {sorted(missing)[:3]}, unexpected "
            f"{sorted(unexpected)[:3]}); export needs the model the trainer was built from."
        )
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        model.save_pretrained(tmp)
        for name in TOKENIZER_FILES:
            if (source / name).is_file():
                shutil.copy2(source / name, tmp / name)
        if folder.exists():
            old = folder.with_name(f".{folder.name}-old")
            shutil.rmtree(old, ignore_errors=True)
            folder.rename(old)
            tmp.rename(folder)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
