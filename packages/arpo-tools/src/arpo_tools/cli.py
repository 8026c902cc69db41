"""``arpo tools``: serve arpo's MCP tool servers, and list or call the tools of any ``mcpServers`` config.

Registered with the ``arpo`` command through the ``arpo.cli`` entry-point group; tool servers are found through
the ``arpo.tools`` group (name → ``build_server(config)``), so another package can add its own.
Imports of the MCP SDK happen inside the commands, so ``arpo --help`` stays fast.
"""

from __future__ import annotations

import json
import os
import sys
import typing
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from arpo_tools.client import MCPToolClient

app = typer.Typer(name="tools", help="Serve arpo's MCP tools; list and call the tools of an mcpServers config.")


def tool_servers() -> dict[str, Any]:
    """Installed tool servers: name → entry point of the ``arpo.tools`` group."""
    return {ep.name: ep for ep in entry_points(group="arpo.tools")}


def builtin_mcp_config() -> dict[str, Any]:
    """An ``mcpServers`` block running every installed arpo tool server over stdio with this interpreter."""
    passed = {k: v for k, v in os.environ.items() if k.startswith("ARPO_")}  # cache dirs, tokens: not secrets
    return {
        "mcpServers": {
            name: {"command": sys.executable, "args": ["-m", "arpo_tools.cli", "serve", name], "env": passed}
            for name in sorted(tool_servers())
        }
    }


def _config_model(build: Any) -> type[Any]:
    hints = typing.get_type_hints(build)
    for arg in typing.get_args(hints.get("config")) or (hints.get("config"),):
        if isinstance(arg, type) and hasattr(arg, "model_validate"):
            return arg
    raise typer.BadParameter(f"{build!r} does not take a pydantic config")


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(2)


@app.command()
def serve(
    name: Annotated[str, typer.Argument(help="Tool server to run: python, search, or another installed one.")],
    transport: Annotated[str, typer.Option(help="stdio (default) or http.")] = "stdio",
    host: Annotated[str, typer.Option(help="HTTP: address to bind; a non-loopback one needs --token.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="HTTP: port.")] = 8765,
    token: Annotated[
        str | None, typer.Option(help="HTTP: bearer token every request must carry (or $ARPO_TOOLS_TOKEN).")
    ] = None,
    allowed_host: Annotated[
        list[str] | None, typer.Option(help="HTTP: another Host header to accept (DNS-rebinding protection).")
    ] = None,
    corpus: Annotated[Path | None, typer.Option(help="search: a JSONL corpus of {id, title, text} passages.")] = None,
    option: Annotated[
        list[str] | None, typer.Option("--option", "-o", help="A field of the server's config: key=value.")
    ] = None,
) -> None:
    """Run one tool server (MCP) until interrupted."""
    import yaml
    from pydantic import ValidationError

    from arpo_tools.serving import ServingError
    from arpo_tools.serving import serve as run

    servers = tool_servers()
    if name not in servers:
        raise _fail(f"no tool server named {name!r}; installed: {', '.join(sorted(servers)) or 'none'}.")
    try:
        build = servers[name].load()
    except Exception as err:
        raise _fail(
            f"tool server {name!r} failed to load ({type(err).__name__}: {err}); reinstall its package."
        ) from None
    model = _config_model(build)
    fields: dict[str, Any] = {}
    for item in option or ():
        key, sep, raw = item.partition("=")
        if not sep:
            raise _fail(f"--option {item!r} is not of the form key=value.")
        fields[key.strip()] = yaml.safe_load(raw)
    if corpus is not None:
        fields["corpus"] = str(corpus)
    try:
        config = model.model_validate(fields)
    except ValidationError as err:
        first = err.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        valid = ", ".join(sorted(model.model_fields))
        raise _fail(f"{name} server option {loc!r} is invalid: {first['msg']} (options: {valid}).") from None
    if transport not in ("stdio", "http"):
        raise _fail(f"--transport {transport!r} is not one of stdio or http.")
    try:
        server = build(config)
    except Exception as err:  # a bad corpus, an unwritable cache, a missing sandbox primitive, ...
        raise _fail(f"the {name} server could not start: {err}") from None
    try:
        run(server, transport, host=host, port=port, token=token, allowed_hosts=allowed_host or ())  # type: ignore[arg-type]
    except ServingError as err:
        raise _fail(str(err)) from None


def _load(config: Path | None) -> MCPToolClient:
    from arpo_tools.client import MCPToolClient
    from arpo_tools.mcp_config import MCPConfigError, load_mcp_config, parse_mcp_config

    try:
        servers = load_mcp_config(config) if config is not None else parse_mcp_config(builtin_mcp_config())
    except MCPConfigError as err:
        raise _fail(str(err)) from None
    return MCPToolClient(servers)


@app.command("list")
def list_tools(
    config: Annotated[Path | None, typer.Option(help="An mcpServers JSON file; default: arpo's own tools.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the OpenAI tool schemas as JSON.")] = False,
) -> None:
    """List every tool of every configured server, with the names the model will see."""
    import anyio

    from arpo_tools.client import ToolServerError

    async def main() -> None:
        async with _load(config) as tools:
            specs = await tools.list_tools()
        if as_json:
            typer.echo(json.dumps([s.openai_schema() for s in specs], indent=2))
            return
        for s in specs:
            first = (s.description.strip().splitlines() or [""])[0]
            typer.echo(f"{s.name:24} [{s.server}] {first[:90]}")

    try:
        anyio.run(main)
    except ToolServerError as err:
        raise _fail(str(err)) from None


@app.command()
def call(
    name: Annotated[str, typer.Argument(help="The tool's name as `arpo tools list` shows it.")],
    args: Annotated[
        str, typer.Option("--args", help='Arguments as a JSON object, e.g. \'{"code": "print(1)"}\'.')
    ] = "{}",
    config: Annotated[Path | None, typer.Option(help="An mcpServers JSON file; default: arpo's own tools.")] = None,
    timeout: Annotated[float | None, typer.Option(help="Seconds before the call is abandoned.")] = None,
) -> None:
    """Call one tool and print what the model would see (exit 1 if the tool reported an error)."""
    import anyio

    from arpo_tools.client import ToolServerError

    try:
        arguments = json.loads(args)
    except json.JSONDecodeError as err:
        raise _fail(f"--args is not valid JSON ({err.msg} at column {err.colno}); pass a JSON object.") from None
    if not isinstance(arguments, dict):
        raise _fail(f"--args must be a JSON object, not {type(arguments).__name__}.")

    async def main() -> bool:
        async with _load(config) as tools:
            result = await tools.call_tool(name, arguments, timeout=timeout)
        typer.echo(result.text)
        return result.is_error

    try:
        failed = anyio.run(main)
    except ToolServerError as err:
        raise _fail(str(err)) from None
    if failed:
        raise typer.Exit(1)


if __name__ == "__main__":
    app()
