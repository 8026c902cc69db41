"""`arpo tools list|call|serve` as a user runs them (the real console script, real servers)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ARPO = str(Path(sys.executable).parent / "arpo")
ECHO = str(Path(__file__).with_name("echo_server.py"))


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([ARPO, "tools", *args], capture_output=True, text=True, timeout=120)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "mcp.json"
    path.write_text(json.dumps({"mcpServers": {"echo": {"command": sys.executable, "args": [ECHO]}}}))
    return path


def test_list_and_call(config: Path) -> None:
    listed = run("list", "--config", str(config))
    assert listed.returncode == 0, listed.stderr
    assert "add" in listed.stdout and "[echo]" in listed.stdout
    schemas = json.loads(run("list", "--config", str(config), "--json").stdout)
    assert {s["function"]["name"] for s in schemas} >= {"echo", "add", "weird_name_with_spaces"}
    assert all(s["type"] == "function" and s["function"]["parameters"]["type"] == "object" for s in schemas)
    called = run("call", "add", "--args", '{"a": 20, "b": 22}', "--config", str(config))
    assert called.returncode == 0 and called.stdout.strip() == "42"
    failed = run("call", "fail", "--args", '{"message": "nope"}', "--config", str(config))
    assert failed.returncode == 1 and "nope" in failed.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["call", "add", "--args", "{a: 1}"], "--args is not valid JSON"),
        (["call", "add", "--args", "[1]"], "--args must be a JSON object, not list"),
        (["list", "--config", "/nonexistent.json"], "does not exist"),
        (["serve", "nosuch"], "no tool server named 'nosuch'"),
        (["serve", "python", "--transport", "http", "--host", "0.0.0.0"], "refusing to serve on 0.0.0.0"),
    ],
)
def test_bad_input_is_one_sentence_and_nonzero(config: Path, args: list[str], message: str) -> None:
    if args[0] != "serve" and "--config" not in args:
        args = [*args, "--config", str(config)]
    proc = run(*args)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert proc.stderr.count("\n") == 1  # one line
