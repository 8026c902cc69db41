"""``arpo serve`` / ``python -m arpo_backends.serve``: the CPU inference server on uvicorn.

Options are named as vLLM's ``vllm serve`` where one exists (``--served-model-name``, ``--max-model-len``,
``--max-num-seqs``, ``--dtype``). Importing this module is cheap (torch and transformers load when it runs), so the
``arpo`` command can register it without slowing every other sub-command.

Before torch loads, ``threads.configure_openmp`` bounds OpenMP's busy-waiting (it does not change any result):
with torch's default spinning, a forward on a machine shared with other busy processes (the trainer) ran 5–8×
slower. ``--threads auto``, ``--prefill-batch-tokens`` and ``--prefix-cache-tokens`` are faster still, at the price of
bit-exactness (see their help).
"""

from __future__ import annotations

from typing import Annotated

import typer

__all__ = ["app", "main", "parse_threads", "serve"]

app = typer.Typer(
    add_completion=False,
    help="Serve a causal LM on CPU with vLLM's OpenAI-compatible API (token ids, logprobs, weight reload).",
)


def serve(
    model: str,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    served_model_names: list[str] | None = None,
    dtype: str = "float32",
    max_model_len: int | None = None,
    max_num_seqs: int = 32,
    threads: int | str | None = None,
    prefill_batch_tokens: int = 0,
    prefix_cache_tokens: int = 0,
    log_level: str = "info",
) -> None:
    """Load ``model`` and serve it until interrupted."""
    try:
        import fastapi  # noqa: F401
        import uvicorn
    except ImportError as err:
        raise ImportError(
            f"The CPU inference server needs the serve extra ({err.name} is missing): "
            "pip install 'arpo-backends[serve]'"
        ) from None
    from arpo_backends.serve.threads import AutoThreads, FixedThreads, configure_openmp

    policy = parse_threads(threads)
    configure_openmp()  # before torch is imported
    from arpo_backends.serve.loader import load_engine

    engine, folder = load_engine(
        model,
        dtype=dtype,
        max_model_len=max_model_len,
        max_batch=max_num_seqs,
        prefill_tokens=prefill_batch_tokens,
        prefix_cache_tokens=prefix_cache_tokens,
    )
    if isinstance(policy, int):
        import torch

        torch.set_num_threads(policy)
        engine.threads = FixedThreads(policy)
    elif policy == "auto":
        engine.threads = AutoThreads()
    from arpo_backends.serve.app import build_app

    names = served_model_names or [model]
    uvicorn.run(build_app(engine, names, root=str(folder)), host=host, port=port, log_level=log_level)


def parse_threads(value: int | str | None) -> int | str | None:
    """``--threads``: None (torch's default), a count ≥ 1, or ``auto``."""
    if value is None or value == "auto":
        return value
    try:
        count = int(value)
    except ValueError:
        raise ValueError(f"--threads={value!r} must be a number of threads or 'auto'.") from None
    if count < 1:
        raise ValueError(f"--threads={value!r} must be at least 1.")
    return count


@app.callback(invoke_without_command=True)
def serve_command(
    model: Annotated[
        str,
        typer.Option(help="A local Hugging Face folder, 'smollm2-135m-instruct' (the default model) or 'tiny'."),
    ] = "smollm2-135m-instruct",
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    served_model_name: Annotated[
        list[str] | None, typer.Option(help="Name(s) clients pass as `model` (default: the --model value).")
    ] = None,
    dtype: Annotated[str, typer.Option(help="float32, bfloat16 or float16.")] = "float32",
    max_model_len: Annotated[
        int | None, typer.Option(help="Context length (prompt + completion); default: the model's.")
    ] = None,
    max_num_seqs: Annotated[int, typer.Option(help="Most sequences decoded together in one batch.")] = 32,
    threads: Annotated[
        str | None,
        typer.Option(
            envvar="ARPO_SERVE_THREADS",
            help="torch CPU threads (default: torch's, one per core). 'auto': re-picked every step from the cores "
            "other processes leave free — faster on a shared machine, but a thread count changes the last bits of "
            "a forward, so seeded samples are no longer reproducible run to run.",
        ),
    ] = None,
    prefill_batch_tokens: Annotated[
        int,
        typer.Option(
            envvar="ARPO_SERVE_PREFILL_BATCH_TOKENS",
            help="Prefill several prompts in one forward, up to this many tokens (0: one forward per prompt). "
            "15–25 % less prefill CPU; bit-identical to one forward per prompt with --threads 1 only.",
        ),
    ] = 0,
    prefix_cache_tokens: Annotated[
        int,
        typer.Option(
            envvar="ARPO_SERVE_PREFIX_CACHE_TOKENS",
            help="Keep the keys and values of up to this many tokens of earlier requests and prefill only what a "
            "new prompt adds to one of them (vLLM's automatic prefix caching; 0: off). Agent turns and ARPO's "
            "branches repeat their context, so most of their prefill is skipped; ~46 KB per token for "
            "SmolLM2-135M in float32. Changes the last bits of a forward, so seeded samples are reproducible only "
            "for the same requests in the same order.",
        ),
    ] = 0,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
) -> None:
    """Serve a causal LM on CPU with vLLM's OpenAI-compatible API (token ids, logprobs, weight reload)."""
    try:
        serve(
            model,
            host=host,
            port=port,
            served_model_names=served_model_name,
            dtype=dtype,
            max_model_len=max_model_len,
            max_num_seqs=max_num_seqs,
            threads=threads,
            prefill_batch_tokens=prefill_batch_tokens,
            prefix_cache_tokens=prefix_cache_tokens,
            log_level=log_level,
        )
    except (ValueError, ImportError) as err:  # unknown model, missing package, bad option: one clear line
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None


def main() -> None:
    app(prog_name="arpo serve")
