"""``arpo sft``: the SFT cold start (the paper's first stage) on the same trainers as RL.

    arpo sft --data demos.jsonl --model smollm2-135m-instruct --backend fsdp --epochs 2 --output-dir runs/sft
    arpo sft --data demos.jsonl --backend deepspeed --nproc-per-node 2          # re-runs itself under torchrun

Everything that can be wrong with the input (backend, model, data file, options) is checked before the model is
loaded, and reported in one sentence with exit code 2. The run writes ``OUTPUT/metrics.jsonl`` (one line per
update, rank 0), ``OUTPUT/checkpoints/step-NNNNNN`` (atomic, exact resume with ``--resume``), and the final model in
Hugging Face format at ``OUTPUT/model`` — what ``arpo train --model`` and ``arpo serve --model`` take.
Ctrl-C saves a checkpoint at the next update boundary and exits.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from arpo_backends.cli.options import Launcher, MasterAddr, MasterPort, Nnodes, NodeRank, NprocPerNode

__all__ = ["app", "run_sft"]

app = typer.Typer(add_completion=False, help="Supervised fine-tuning on demonstrations (the cold start before RL).")


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(2)


def _trainer_config(
    config_file: Path | None, overrides: list[str], flags: dict[str, Any]
) -> Any:  # TrainerConfig; typed loosely so importing this module stays cheap
    from arpo_backends.train.config import TrainerConfig
    from arpo_core.config import load_config

    sets = [f"{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in flags.items() if v is not None]
    return load_config(config_file, [*sets, *overrides], model=TrainerConfig)


def _batches(n: int, batch_size: int, epochs: int, seed: int) -> list[tuple[int, list[int]]]:
    """(epoch, row indices) of every update: each epoch a fresh seeded permutation, cut into batches."""
    import numpy as np

    plan: list[tuple[int, list[int]]] = []
    for epoch in range(epochs):
        order = np.random.default_rng([seed, epoch]).permutation(n).tolist()
        plan += [(epoch, order[i : i + batch_size]) for i in range(0, n, batch_size)]
    return plan


def run_sft(
    *,
    data: Path,
    output_dir: Path,
    config: Any,
    epochs: int,
    batch_size: int,
    max_length: int | None,
    save_every: int,
    resume: str | None,
    checkpoint_at_end: bool = True,
    handle_sigint: bool = True,
) -> Path:
    """The SFT loop on this rank (every rank runs it); returns the exported model folder."""
    from arpo_backends.sft import load_chat_tokenizer, load_sft_samples
    from arpo_backends.train import finish, init_distributed, make_trainer

    ctx = init_distributed()
    tokenizer = load_chat_tokenizer(config.model)
    samples, stats = load_sft_samples(data, tokenizer, max_length=max_length)
    if len(samples) < ctx.world_size:
        raise ValueError(
            f"{data} gives {len(samples)} usable demonstration(s) ({stats.dropped_too_long} longer than "
            f"--max-length), fewer than the {ctx.world_size} ranks; add demonstrations or use fewer ranks."
        )
    trainer = make_trainer(config, ctx)
    trainer.pad_token_id = int(tokenizer.pad_token_id or 0)
    checkpoints = output_dir / "checkpoints"
    position = trainer.load(_resume_path(resume, checkpoints)) if resume else {}
    plan = _batches(len(samples), batch_size, epochs, config.seed)
    start = int(position.get("update", 0))
    if ctx.is_main:
        output_dir.mkdir(parents=True, exist_ok=True)
        typer.echo(
            f"SFT: {stats.samples} demonstrations ({stats.loss_tokens} trained tokens of {stats.tokens}; "
            f"{stats.dropped_too_long} dropped as too long), {len(plan)} updates on {ctx.world_size} rank(s), "
            f"backend {config.backend}" + (f", resuming at update {start}" if start else "")
        )
    stop = {"requested": False}
    if handle_sigint:  # (only the main thread may; arpo train handles Ctrl-C itself)
        signal.signal(signal.SIGINT, lambda *_: stop.update(requested=True))
    metrics_file = output_dir / "metrics.jsonl"
    progress = _progress(len(plan), start, ctx.is_main)
    for update in range(start, len(plan)):
        epoch, rows = plan[update]
        began = time.perf_counter()
        metrics = trainer.sft_step([samples[i] for i in rows])
        metrics.update(update=float(update + 1), epoch=float(epoch), seconds=time.perf_counter() - began)
        if ctx.is_main:
            with metrics_file.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps({"phase": "sft", **metrics}) + "\n")
            progress(update + 1, metrics)
        interrupted = bool(ctx.all_reduce_max(int(stop["requested"])))
        at_end = checkpoint_at_end and update + 1 == len(plan)
        if interrupted or (save_every and (update + 1) % save_every == 0) or at_end:
            folder = trainer.save(checkpoints, data_position={"update": update + 1})
            if interrupted:
                if ctx.is_main:
                    typer.echo(f"\ninterrupted: checkpoint saved to {folder}; continue with --resume latest.")
                trainer.close()
                finish(130)
    model_dir = trainer.export_hf(output_dir / "model")
    if ctx.is_main:
        typer.echo(f"\nmodel: {model_dir}\nmetrics: {metrics_file}\ncheckpoints: {checkpoints}")
    trainer.close()
    return model_dir


def _resume_path(spec: str, checkpoints: Path) -> Path:
    from arpo_backends.checkpoint import CheckpointStore

    return CheckpointStore(checkpoints).resolve(spec)


def _progress(total: int, start: int, enabled: bool) -> Any:
    def show(done: int, metrics: dict[str, float]) -> None:
        if enabled:
            sys.stderr.write(
                f"\rsft {done}/{total}  loss {metrics.get('loss', float('nan')):.4f}  "
                f"grad_norm {metrics.get('grad_norm', float('nan')):.3f}  lr {metrics.get('lr', 0.0):.2e}   "
            )
            sys.stderr.flush()

    return show


@app.callback(invoke_without_command=True)
def sft_command(
    data: Annotated[
        Path,
        typer.Option(
            help="Demonstrations: .jsonl/.json/.parquet (TRL messages, prompt-completion, ShareGPT, ARPO text)."
        ),
    ],
    model: Annotated[
        str | None, typer.Option(help="A local Hugging Face folder or 'smollm2-135m-instruct' / 'tiny'.")
    ] = None,
    backend: Annotated[str | None, typer.Option(help="fsdp (PyTorch FSDP2) or deepspeed (ZeRO).")] = None,
    output_dir: Annotated[Path, typer.Option(help="Where metrics, checkpoints and the final model go.")] = Path(
        "runs/sft"
    ),
    epochs: Annotated[int, typer.Option(min=1, help="Passes over the demonstrations.")] = 1,
    batch_size: Annotated[
        int, typer.Option(min=1, help="Demonstrations per optimiser update (all ranks together).")
    ] = 16,
    lr: Annotated[float | None, typer.Option(help="Learning rate (default 1e-5 for SFT).")] = None,
    max_length: Annotated[int | None, typer.Option(help="Drop demonstrations longer than this many tokens.")] = 2048,
    lora_rank: Annotated[
        int | None, typer.Option(help="Train LoRA adapters of this rank instead of every weight.")
    ] = None,
    zero_stage: Annotated[int | None, typer.Option(help="DeepSpeed ZeRO stage (0-3).")] = None,
    deepspeed_config: Annotated[Path | None, typer.Option(help="Your own DeepSpeed JSON config.")] = None,
    config: Annotated[
        Path | None, typer.Option(help="Trainer config file (TOML/YAML/JSON), e.g. from `arpo config`.")
    ] = None,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="Override a trainer option: --set optim.weight_decay=0.")
    ] = None,
    save_every: Annotated[int, typer.Option(min=0, help="Checkpoint every N updates (0: only at the end).")] = 0,
    resume: Annotated[str | None, typer.Option(help="'latest', a step number or a checkpoint folder.")] = None,
    nproc_per_node: NprocPerNode = 1,
    nnodes: Nnodes = 1,
    node_rank: NodeRank = 0,
    master_addr: MasterAddr = "127.0.0.1",
    master_port: MasterPort = None,
    launcher: Launcher = "torchrun",
) -> None:
    """Supervised fine-tuning on demonstrations, assistant tokens only (tool results masked)."""
    from arpo_backends.train.dist import name_cpu_accelerator
    from arpo_backends.train.launch import LaunchOptions, maybe_relaunch
    from arpo_core.config import ConfigError
    from arpo_core.data.loaders import DatasetError

    name_cpu_accelerator()
    try:
        options = LaunchOptions(nproc_per_node, nnodes, node_rank, master_addr, master_port, launcher)  # type: ignore[arg-type]
        flags: dict[str, Any] = {
            "model": model,
            "backend": backend,
            "optim.lr": lr if lr is not None else (None if config else 1e-5),
            "lora.rank": lora_rank,
            "deepspeed.zero_stage": zero_stage,
            "deepspeed.config_file": str(deepspeed_config) if deepspeed_config else None,
        }
        trainer_config = _trainer_config(config, list(set_ or []), flags)
        _check_inputs(trainer_config, data, deepspeed_config)
    except (ConfigError, DatasetError, ValueError, ImportError) as err:
        raise _fail(str(err)) from None
    maybe_relaunch(options)
    try:
        run_sft(
            data=data,
            output_dir=output_dir,
            config=trainer_config,
            epochs=epochs,
            batch_size=batch_size,
            max_length=max_length,
            save_every=save_every,
            resume=resume,
        )
    except (DatasetError, ValueError, ImportError) as err:
        typer.echo(f"error: {err}", err=True)
        from arpo_backends.train import finish

        finish(2)
    from arpo_backends.train import finish

    finish(0)


def _check_inputs(config: Any, data: Path, deepspeed_config: Path | None) -> None:
    """The checks that need no model: backend installed, model resolvable, data readable, DeepSpeed file present."""
    from arpo_backends.sft import load_demonstrations
    from arpo_backends.train import available_backends
    from arpo_backends.train.model import model_folder

    known = available_backends()
    if config.backend not in known:
        raise ValueError(f"unknown backend {config.backend!r}; choose one of: {', '.join(sorted(known))}.")
    if deepspeed_config is not None and not deepspeed_config.is_file():
        raise ValueError(f"--deepspeed-config {deepspeed_config} does not exist; pass a DeepSpeed JSON file.")
    model_folder(config)
    if not data.is_file():
        raise ValueError(f"--data {data} does not exist; pass a .jsonl, .json or .parquet file of demonstrations.")
    if not load_demonstrations(data):
        raise ValueError(f"--data {data} holds no demonstration; add at least one row.")
