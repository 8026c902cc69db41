"""mcpServers parsing: transports, ${VAR} expansion, and one-sentence errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from arpo_tools.mcp_config import HttpServerConfig, MCPConfigError, StdioServerConfig, load_mcp_config, parse_mcp_config

ENV = {"HOME": "/home/u", "TOKEN": "s3cret"}


def test_stdio_and_http_entries_with_expansion() -> None:
    servers = parse_mcp_config(
        {
            "mcpServers": {
                "notes": {
                    "command": "uvx",
                    "args": ["notes-server", "--root", "${HOME}/notes"],
                    "env": {"LEVEL": "${LEVEL:-info}", "ROOT": "${HOME}"},
                    "cwd": "${WORK:-/tmp}",
                    "timeout": 5,
                },
                "search": {"url": "http://127.0.0.1:9/mcp", "headers": {"Authorization": "Bearer ${TOKEN}"}},
                "off": {"command": "x", "disabled": True},
            }
        },
        ENV,
    )
    assert list(servers) == ["notes", "search"]  # disabled servers are dropped
    notes = servers["notes"]
    assert isinstance(notes, StdioServerConfig)
    assert notes.args == ("notes-server", "--root", "/home/u/notes")
    assert notes.env == {"LEVEL": "info", "ROOT": "/home/u"} and notes.cwd == "/tmp" and notes.timeout == 5
    search = servers["search"]
    assert isinstance(search, HttpServerConfig) and search.headers == {"Authorization": "Bearer s3cret"}


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"command": "x", "args": ["${NOPE}"]}, r"mcpServers.s.args\[0\] uses \$\{NOPE\}, which is not set"),
        ({"url": "http://h/sse"}, r"SSE transport, which MCP deprecated"),
        ({"type": "sse", "url": "http://h/events"}, r"SSE transport"),
        ({"command": "x", "url": "http://h/mcp"}, r"exactly one of 'command'"),
        ({"args": ["a"]}, r"exactly one of 'command'"),
        ({"command": "x", "tiemout": 3}, r"mcpServers.s.tiemout is not an option; valid options are: .*timeout"),
        ({"command": "x", "timeout": -1}, r"mcpServers.s.timeout is invalid"),
        ("python", r"mcpServers.s must be an object"),
    ],
)
def test_bad_entries(entry: object, message: str) -> None:
    with pytest.raises(MCPConfigError, match=message):
        parse_mcp_config({"mcpServers": {"s": entry}}, ENV)


def test_file_errors(tmp_path: Path) -> None:
    with pytest.raises(MCPConfigError, match="does not exist"):
        load_mcp_config(tmp_path / "none.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"mcpServers": {')
    with pytest.raises(MCPConfigError, match=r"not valid JSON: .* line 1"):
        load_mcp_config(bad)
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"mcpServers": {"a": {"url": "http://x/sse"}}}))
    with pytest.raises(MCPConfigError, match=r"wrong.json: mcpServers.a"):
        load_mcp_config(wrong)
