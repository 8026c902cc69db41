"""``python -m arpo_backends.serve`` in a separate process, and the typer app the ``arpo`` CLI registers."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

openai = pytest.importorskip("openai")
pytest.importorskip("fastapi")

from arpo_backends.models import resolve_model  # noqa: E402
from arpo_backends.serve.cli import app  # noqa: E402
from arpo_backends.serve.testing import wait_healthy  # noqa: E402


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_python_m_serves_over_http(tmp_path: Path) -> None:
    resolve_model("tiny")  # built (or found) here, so the server process only loads it
    port = free_port()
    log = (tmp_path / "server.log").open("w")
    command = [sys.executable, "-m", "arpo_backends.serve", "--model", "tiny", "--port", str(port), "--threads", "1"]
    proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        base_url = f"http://127.0.0.1:{port}"
        wait_healthy(base_url, timeout=120, alive=lambda: proc.poll() is None)
        with openai.OpenAI(base_url=base_url + "/v1", api_key="x", max_retries=0) as c:  # the sync client too
            reply: Any = c.completions.create(
                model="tiny", prompt=[1, 2, 3], max_tokens=4, extra_body={"return_token_ids": True}
            )
        assert reply.choices[0].prompt_token_ids == [1, 2, 3] and 1 <= len(reply.choices[0].token_ids) <= 4
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def test_unknown_model_fails_with_one_clear_line() -> None:
    root = typer.Typer()
    root.add_typer(app, name="serve")
    result = CliRunner().invoke(root, ["serve", "--model", "no-such-model"])
    assert result.exit_code == 2
    assert "Unknown model 'no-such-model'" in result.output and "never downloads" in result.output


def test_help_lists_the_options() -> None:
    root = typer.Typer()
    root.add_typer(app, name="serve")
    result = CliRunner().invoke(root, ["serve", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for option in ("--model", "--port", "--served-model-name", "--max-model-len", "--max-num-seqs", "--threads"):
        assert option in result.output
