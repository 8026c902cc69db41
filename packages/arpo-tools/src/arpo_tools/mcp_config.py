"""The ``mcpServers`` block, as Claude Desktop, Cursor and pydantic-ai write it, validated and expanded.

    {"mcpServers": {
        "python": {"command": "arpo", "args": ["tools", "serve", "python"]},
        "search": {"url": "http://127.0.0.1:8765/mcp", "headers": {"Authorization": "Bearer ${SEARCH_TOKEN}"}},
        "notes":  {"command": "uvx", "args": ["my-notes-server"], "env": {"ROOT": "${HOME}/notes"}, "cwd": "/tmp"}
    }}

A server with ``command`` runs over stdio; one with ``url`` over streamable HTTP (``"type": "sse"`` is refused:
that transport is deprecated in MCP). Strings in ``command``, ``args``, ``env``, ``cwd``, ``url`` and
``headers`` expand ``${VAR}`` and ``${VAR:-default}`` from the environment; an unset variable with no default
is an error naming it. arpo's own per-server options sit beside the standard ones: ``timeout`` (seconds per
call), ``max_concurrency`` (calls in flight) and ``disabled``.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

__all__ = [
    "HttpServerConfig",
    "MCPConfigError",
    "ServerConfig",
    "StdioServerConfig",
    "load_mcp_config",
    "parse_mcp_config",
]

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class MCPConfigError(ValueError):
    """An ``mcpServers`` config that cannot be used; ``str()`` is one sentence naming the problem and the fix."""


class _Common(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

    timeout: float = Field(default=60.0, gt=0)
    """Seconds one tool call may take before it is answered with a timeout error."""
    max_concurrency: int = Field(default=16, ge=1)
    """Calls to this server in flight at once; more wait their turn."""
    disabled: bool = False
    """Skip this server (as Claude Desktop's ``disabled``)."""


class StdioServerConfig(_Common):
    """A server started as a subprocess and spoken to over its stdin/stdout."""

    type: Literal["stdio"] = "stdio"
    command: str
    """The executable (looked up on PATH)."""
    args: tuple[str, ...] = ()
    env: dict[str, str] = Field(default_factory=dict)
    """Extra environment variables for the server, over the SDK's safe default environment."""
    cwd: str | None = None


class HttpServerConfig(_Common):
    """A server reached over MCP's streamable HTTP transport."""

    type: Literal["http", "streamable-http", "streamable_http"] = "http"
    url: str
    headers: dict[str, str] = Field(default_factory=dict)
    """Sent with every request, e.g. ``{"Authorization": "Bearer ${TOKEN}"}``."""


ServerConfig = StdioServerConfig | HttpServerConfig


def _expand(value: str, environ: Mapping[str, str], server: str, where: str) -> str:
    def sub(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in environ:
            return environ[name]
        if default is not None:
            return default
        raise MCPConfigError(
            f"mcpServers.{server}.{where} uses ${{{name}}}, which is not set; export {name} or write "
            f"${{{name}:-default}}."
        )

    return _VAR.sub(sub, value)


def _expand_tree(value: Any, environ: Mapping[str, str], server: str, where: str) -> Any:
    if isinstance(value, str):
        return _expand(value, environ, server, where)
    if isinstance(value, list):
        return [_expand_tree(v, environ, server, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        return {k: _expand_tree(v, environ, server, f"{where}.{k}") for k, v in value.items()}
    return value


def _one_server(name: str, raw: Any, environ: Mapping[str, str]) -> ServerConfig:
    if not isinstance(raw, dict):
        raise MCPConfigError(f"mcpServers.{name} must be an object with 'command' or 'url', not {type(raw).__name__}.")
    kind = raw.get("type")
    if kind == "sse" or (isinstance(raw.get("url"), str) and raw["url"].rstrip("/").endswith("/sse")):
        raise MCPConfigError(
            f"mcpServers.{name} uses the SSE transport, which MCP deprecated; serve it over streamable HTTP "
            "(usually the same server at /mcp) and give that url."
        )
    if ("command" in raw) == ("url" in raw):
        raise MCPConfigError(
            f"mcpServers.{name} needs exactly one of 'command' (a stdio server) or 'url' (an HTTP server)."
        )
    expanded = {
        key: _expand_tree(value, environ, name, key)
        if key in ("command", "args", "env", "cwd", "url", "headers")
        else value
        for key, value in raw.items()
    }
    model: type[StdioServerConfig] | type[HttpServerConfig] = (
        StdioServerConfig if "command" in raw else HttpServerConfig
    )
    try:
        return model.model_validate(expanded)
    except ValidationError as err:
        first = err.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        if first["type"] == "extra_forbidden":
            valid = ", ".join(sorted(model.model_fields))
            raise MCPConfigError(f"mcpServers.{name}.{loc} is not an option; valid options are: {valid}.") from None
        raise MCPConfigError(f"mcpServers.{name}.{loc} is invalid: {first['msg']}.") from None


def parse_mcp_config(data: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> dict[str, ServerConfig]:
    """Validate an ``{"mcpServers": {...}}`` mapping (or the inner mapping itself); disabled servers are dropped."""
    environ = os.environ if environ is None else environ
    servers = data.get("mcpServers", data) if isinstance(data, Mapping) else None
    if not isinstance(servers, Mapping):
        raise MCPConfigError("an MCP config must be an object with an 'mcpServers' object inside.")
    out: dict[str, ServerConfig] = {}
    for name, raw in servers.items():
        if not name or not isinstance(name, str):
            raise MCPConfigError(f"mcpServers has a server with an empty or non-string name: {name!r}.")
        server = _one_server(name, raw, environ)
        if not server.disabled:
            out[name] = server
    return out


def load_mcp_config(path: str | Path, environ: Mapping[str, str] | None = None) -> dict[str, ServerConfig]:
    """Read and validate an ``mcpServers`` JSON file."""
    p = Path(path)
    if not p.is_file():
        raise MCPConfigError(f"MCP config {p} does not exist; pass a JSON file with an 'mcpServers' object.")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise MCPConfigError(
            f"MCP config {p} is not valid JSON: {err.msg} at line {err.lineno}; fix the syntax."
        ) from None
    try:
        return parse_mcp_config(data, environ)
    except MCPConfigError as err:
        raise MCPConfigError(f"{p}: {err}") from None
