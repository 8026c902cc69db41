"""``arpo eval``: a dataset through the agent loop against an OpenAI-compatible endpoint or any litellm model."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Annotated, Any

import typer

__all__ = ["eval_command"]


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(2)


def _tool_client_factory() -> Any:
    """The ``ToolClient`` factory another package registers (arpo-tools: MCP) in the ``arpo.toolclient`` group."""
    from importlib.metadata import entry_points

    found = list(entry_points(group="arpo.toolclient"))
    if not found:
        raise _fail("tools need the arpo-tools package: pip install arpo-tools (or pass --no-tools).")
    return found[0].load()


def eval_command(
    model: Annotated[str, typer.Option(help="Model name at the endpoint (litellm: provider/model).")],
    dataset: Annotated[str, typer.Option(help="A .jsonl/.parquet file, or builtin:arith.")],
    base_url: Annotated[
        str | None, typer.Option(help="OpenAI-compatible base URL, e.g. http://127.0.0.1:8000/v1 (default: OpenAI).")
    ] = None,
    provider: Annotated[str, typer.Option(help="openai (any compatible endpoint) or litellm.")] = "openai",
    api_key_env: Annotated[str, typer.Option(help="Environment variable holding the API key.")] = "OPENAI_API_KEY",
    k: Annotated[int, typer.Option(min=1, help="Samples per question (pass@k).")] = 1,
    tools: Annotated[
        Path | None, typer.Option(help="An mcpServers JSON file (default: arpo's python and search tools).")
    ] = None,
    no_tools: Annotated[bool, typer.Option("--no-tools", help="Answer without tools.")] = False,
    protocol: Annotated[
        str,
        typer.Option(
            help="tags (ARPO's tags, each tool result in a user message: chat models), tags-inline (results inside "
            "the assistant's own turn, as in training: models trained with arpo, on vLLM or arpo serve) or functions "
            "(API function calling)."
        ),
    ] = "tags",
    limit: Annotated[int | None, typer.Option(min=1, help="Only the first N questions.")] = None,
    concurrency: Annotated[int, typer.Option(min=1, help="Episodes in flight at once.")] = 8,
    temperature: Annotated[float | None, typer.Option(help="Default: 0 for k = 1, else 1.0.")] = None,
    max_tokens: Annotated[int, typer.Option(min=1, help="Tokens per model reply.")] = 2048,
    call_limit: Annotated[int, typer.Option(min=0, help="Tool calls per episode (reasoning: 3).")] = 3,
    out: Annotated[
        Path | None, typer.Option(help="JSON report path (default: runs/eval/<model>-<dataset>.json).")
    ] = None,
) -> None:
    """Evaluate a model: pass@1, pass@k, tool calls, tokens and format errors, with every transcript saved."""
    import anyio
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn
    from rich.table import Table

    from arpo_core.algo.rewards import make_reward_function
    from arpo_core.data import DatasetError, load_samples
    from arpo_core.data.builtin import builtin_samples
    from arpo_core.runtime.chat import PROTOCOLS, ChatClient, LiteLLMChatClient, OpenAIChatClient
    from arpo_core.runtime.evaluate import evaluate
    from arpo_core.runtime.inference import InferenceError

    if protocol not in PROTOCOLS:
        raise _fail(f"--protocol {protocol!r} is not one of {', '.join(PROTOCOLS)}.")
    if provider not in ("openai", "litellm"):
        raise _fail(f"--provider {provider!r} is not one of openai or litellm.")
    try:
        if dataset.startswith("builtin:"):
            samples = builtin_samples(dataset, n=limit or 100)
        else:
            samples = load_samples(dataset, limit=limit)
    except (DatasetError, ValueError) as err:
        raise _fail(str(err)) from None
    if not samples:
        raise _fail(f"dataset {dataset} has no questions.")
    client: ChatClient
    if provider == "litellm":
        try:
            client = LiteLLMChatClient(model, api_base=base_url)
        except ImportError as err:
            raise _fail(str(err)) from None
    else:
        client = OpenAIChatClient(base_url, model, api_key=os.environ.get(api_key_env))
    temp = temperature if temperature is not None else (0.0 if k == 1 else 1.0)
    console = Console(stderr=True)

    async def main() -> Any:
        tool_client = None
        stack = None
        if not no_tools:
            open_tools = _tool_client_factory()
            try:
                stack = open_tools(tools)
                tool_client = await stack.__aenter__()
            except Exception as err:  # the factory's errors are one-sentence config/start-up errors
                raise _fail(str(err)) from None
        try:
            with Progress(
                "[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                console=console,
            ) as progress:  # fmt: skip
                task = progress.add_task(f"{model} on {dataset}", total=len(samples) * k)
                return await evaluate(
                    client, samples, tool_client, model=model, dataset=dataset, k=k, protocol=protocol,  # type: ignore[arg-type]
                    concurrency=concurrency, call_limit=call_limit, max_tokens=max_tokens, temperature=temp,
                    on_episode=lambda: progress.advance(task),
                    reward=None if protocol == "functions" else make_reward_function(),
                )  # fmt: skip
        finally:
            if stack is not None:
                await stack.__aexit__(None, None, None)
            if isinstance(client, OpenAIChatClient):
                await client.aclose()

    try:
        report = anyio.run(main)
    except InferenceError as err:
        raise _fail(str(err)) from None
    summary = report.summary()
    if summary["failed_episodes"] == summary["episodes"] + summary["failed_episodes"] and summary["failed_episodes"]:
        first = next(e for q in report.questions for e in q.errors)
        raise _fail(f"every episode failed; the first: {first}")
    table = Table(title=f"{model} · {dataset} · k = {k} · {protocol}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in summary.items():
        table.add_row(key, f"{value:.3f}" if not float(value).is_integer() else f"{value:g}")
    Console().print(table)
    path = (
        out
        or Path("runs/eval") / f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', model)}-{Path(dataset).stem.replace(':', '_')}.json"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report.to_dict(), indent=1, ensure_ascii=False))
    typer.echo(f"report: {path}")
