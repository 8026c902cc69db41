"""The ``arpo`` command line (typer). Heavy imports happen inside commands, so ``arpo --help`` is instant."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    name="arpo",
    help="ARPO: train tool-using LLM agents with entropy-based adaptive rollout (arXiv 2507.19849).",
    no_args_is_help=True,
    add_completion=False,
)


@app.command()
def version() -> None:
    """Print the installed arpo-core version."""
    from arpo_core import __version__

    typer.echo(__version__)


@app.command("config")
def show_config(
    config: Annotated[Path | None, typer.Option("--config", "-c", help="A .toml, .yaml or .json run file.")] = None,
    overrides: Annotated[
        list[str] | None, typer.Option("--set", help="Override one option: section.key=value (repeatable).")
    ] = None,
) -> None:
    """Validate a run config and print it in full as YAML, defaults included."""
    import yaml

    from arpo_core.config import ArpoConfig, ConfigError, load_config

    try:
        resolved: ArpoConfig = load_config(config, overrides or ())
    except ConfigError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None
    typer.echo(yaml.safe_dump(resolved.model_dump(mode="json"), sort_keys=False).rstrip())


@app.command()
def demo(
    prompts: Annotated[int, typer.Option(min=1, help="Prompt groups to expand for each algorithm.")] = 32,
    budget: Annotated[int, typer.Option(min=1, help="M: trajectories per prompt.")] = 8,
    global_samples: Annotated[int, typer.Option(min=1, help="N: trajectories from the bare prompt (ARPO).")] = 4,
    seed: Annotated[int, typer.Option(help="Seed of the toy policy and the branch draws.")] = 0,
    out: Annotated[Path, typer.Option(help="Folder for the ARPO rollout trees (JSONL).")] = Path("runs/demo"),
) -> None:
    """Run ARPO's rollout algorithm on a scripted toy policy against GRPO at equal budget (no model needed)."""
    from rich.console import Console
    from rich.table import Table

    from arpo_core.cli.demo import render_tree, run_demo, write_demo_trees

    if global_samples > budget:
        raise typer.BadParameter(
            f"--global-samples={global_samples} exceeds --budget={budget}; N cannot exceed M.",
            param_hint="--global-samples",
        )
    console = Console()
    console.print("[bold]arpo demo[/bold]: ARPO's rollout algorithm on a scripted toy policy")
    console.print(
        "The real scheduler, entropy monitor, rollout trees, rewards and attribution;\n"
        "the toy policy's entropy rises after tool results, as ARPO observed in LLMs.\n"
        "No model or server is involved: `arpo train` is the real job.\n",
        highlight=False,
    )
    arpo, grpo, trees = run_demo(prompts, budget, global_samples, seed)
    table = Table(title=f"{prompts} prompts, M = {budget} trajectories each")
    for col in (
        "",
        "N",
        "branches",
        "tool calls run",
        "mean reward",
        "tokens in trees",
        "tokens on paths",
        "branched",
    ):
        table.add_column(col, justify="right")
    for s, n in ((arpo, global_samples), (grpo, budget)):
        rate = f"{s.positive_decisions}/{s.decisions}" if s.decisions else "-"
        table.add_row(
            s.name,
            str(n),
            str(s.branches),
            str(s.tool_calls),
            f"{s.mean_reward:+.3f}",
            str(s.unique_tokens),
            str(s.expanded_tokens),
            rate,
        )
    console.print(table)
    console.print(
        f"ARPO ran {arpo.tool_calls / max(grpo.tool_calls, 1):.2f}× the tool calls of GRPO for the same\n"
        f"{arpo.trajectories} trajectories: branches share their parent's prefix and tool results.\n"
        "'branched': positive branch decisions / decisions (one after each tool result).\n",
        highlight=False,
    )
    console.print("One ARPO group (W: entropy window; branches hang under tool results):")
    for line in render_tree(trees[0]):
        console.print(line, markup=False, highlight=False)
    path = write_demo_trees(trees, out)
    console.print(f"\nARPO rollout trees written to {path} (one group per line; `RolloutTree.loads` reads them).")


from arpo_core.cli.eval_cmd import eval_command  # noqa: E402 - typer wiring after the app exists
from arpo_core.cli.rollout_cmd import rollout_command  # noqa: E402

app.command("eval")(eval_command)
app.command("rollout")(rollout_command)

# Sub-commands other packages add through the `arpo.cli` entry-point group, and where to get the known ones.
_KNOWN_PLUGINS = {
    "tools": "arpo-tools",
    "serve": "arpo-backends[serve]",
    "sft": "arpo-backends",
    "train": "arpo-backends",
}


def _add_plugins() -> None:
    from importlib.metadata import entry_points

    found = set()
    for ep in entry_points(group="arpo.cli"):
        try:
            sub = ep.load()
        except Exception as err:  # a broken plugin must not take the whole CLI down
            message = f"the `arpo {ep.name}` command failed to load ({type(err).__name__}: {err})."
            _add_missing(ep.name, message)
            continue
        app.add_typer(sub, name=ep.name)
        found.add(ep.name)
    for name, package in _KNOWN_PLUGINS.items():
        if name not in found:
            _add_missing(name, f"`arpo {name}` needs the {package} package: pip install {package}")


def _add_missing(name: str, message: str) -> None:
    @app.command(name, context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
    def missing() -> None:
        typer.echo(f"error: {message}", err=True)
        raise typer.Exit(2)


_add_plugins()


def main() -> None:
    app()
