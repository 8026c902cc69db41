"""``arpo rollout``: expand a dataset's prompts into ARPO rollout trees against running inference servers."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from arpo_core.cli.eval_cmd import _fail, _tool_client_factory

__all__ = ["rollout_command"]


async def _vocab_size(base_url: str, model: str, configured: int | None) -> int:
    """|V| from the config, else from the server's /v1/models (arpo's CPU server reports it)."""
    if configured is not None:
        return configured
    import httpx2

    try:
        async with httpx2.AsyncClient(timeout=10) as http:
            data = (await http.get(f"{base_url.rstrip('/')}/models")).json()
        for entry in data.get("data", []):
            if entry.get("id") == model and entry.get("vocab_size"):
                return int(entry["vocab_size"])
    except Exception:
        pass
    raise _fail(
        f"the vocabulary size of {model} is unknown (the server does not report it); pass "
        "--set algo.entropy.vocab_size=N (e.g. 151936 for Qwen2.5)."
    )


def rollout_command(
    model: Annotated[str, typer.Option(help="Model name at the servers.")],
    dataset: Annotated[str, typer.Option(help="A .jsonl/.parquet file, or builtin:arith.")],
    base_url: Annotated[
        list[str], typer.Option(help="vLLM-compatible base URL (repeat for several servers), e.g. http://h:8000/v1.")
    ],
    config: Annotated[Path | None, typer.Option("--config", "-c", help="A run config (.toml/.yaml).")] = None,
    overrides: Annotated[list[str] | None, typer.Option("--set", help="Override: section.key=value.")] = None,
    tools: Annotated[Path | None, typer.Option(help="An mcpServers JSON file (default: arpo's own tools).")] = None,
    no_tools: Annotated[bool, typer.Option("--no-tools", help="Generate without tools.")] = False,
    limit: Annotated[int | None, typer.Option(min=1, help="Only the first N prompts.")] = None,
    out: Annotated[Path, typer.Option(help="JSONL file the trees are appended to as they finish.")] = Path(
        "runs/rollout/trees.jsonl"
    ),
) -> None:
    """Write one ARPO rollout tree per prompt (M trajectories each) and print a summary."""
    import anyio
    from rich.console import Console
    from rich.table import Table

    from arpo_core.algo.rewards import make_reward_function
    from arpo_core.config import ArpoConfig, ConfigError, load_config
    from arpo_core.data import DatasetError, load_samples
    from arpo_core.data.builtin import builtin_samples
    from arpo_core.runtime.engine import FinishedGroup, PromptGroup, RolloutEngine
    from arpo_core.runtime.inference import InferenceError
    from arpo_core.runtime.openai_client import OpenAITokenClient
    from arpo_core.runtime.server_tokenizer import ServerTokenizer
    from arpo_core.testing import FakeToolClient
    from arpo_core.tree import write_jsonl

    try:
        cfg: ArpoConfig = load_config(config, overrides or ())
        samples = (
            builtin_samples(dataset, n=limit or 100)
            if dataset.startswith("builtin:")
            else load_samples(dataset, limit=limit)
        )
    except (ConfigError, DatasetError, ValueError) as err:
        raise _fail(str(err)) from None
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("")
    totals: dict[str, float] = {"groups": 0, "trajectories": 0, "branches": 0, "tool_calls": 0, "reward": 0.0}

    async def main() -> None:
        tokenizer = ServerTokenizer(base_url[0], model)
        clients = [OpenAITokenClient(url, model) for url in base_url]
        vocab = await _vocab_size(base_url[0], model, cfg.algo.entropy.vocab_size)
        prompts = [
            PromptGroup(s.id or f"q{i}", tuple(await tokenizer.encode_chat(s.messages)), s.ground_truth)
            for i, s in enumerate(samples)
        ]
        stack = None
        tool_client: Any = FakeToolClient({})
        if not no_tools:
            stack = _tool_client_factory()(tools)
            tool_client = await stack.__aenter__()
        try:
            engine = RolloutEngine(
                clients, tokenizer, tool_client, cfg.tool_calls.make_parser(), cfg, vocab_size=vocab,
                reward_fn=make_reward_function(cfg.algo.reward),
            )  # fmt: skip
            send, receive = anyio.create_memory_object_stream[FinishedGroup](max_buffer_size=8)
            async with anyio.create_task_group() as tg:
                tg.start_soon(engine.run, prompts, send)
                async with receive:
                    async for group in receive:
                        write_jsonl(out, [group.tree], append=True)  # each group is on disk as soon as it ends
                        totals["groups"] += 1
                        totals["trajectories"] += len(group.tree)
                        totals["branches"] += sum(r.origin == "branch" for r in group.tree.records)
                        totals["tool_calls"] += group.tool_calls
                        totals["reward"] += sum(r.reward or 0.0 for r in group.tree.records)
        finally:
            if stack is not None:
                await stack.__aexit__(None, None, None)

    try:
        anyio.run(main)
    except InferenceError as err:
        raise _fail(str(err)) from None
    except Exception as err:
        if type(err).__name__ in ("MCPConfigError", "ToolServerError"):
            raise _fail(str(err)) from None
        raise
    table = Table(title=f"arpo rollout · {model} · {dataset}")
    for col in ("groups", "trajectories", "branches", "tool calls", "mean reward"):
        table.add_column(col, justify="right")
    n = max(totals["trajectories"], 1)
    table.add_row(
        f"{totals['groups']:g}", f"{totals['trajectories']:g}", f"{totals['branches']:g}",
        f"{totals['tool_calls']:g}", f"{totals['reward'] / n:+.3f}",
    )  # fmt: skip
    Console().print(table)
    typer.echo(f"trees: {out}")
