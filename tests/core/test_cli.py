"""The ``arpo`` command: help, version, the demo, and one-sentence errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from arpo_core import __version__
from arpo_core.cli import app
from arpo_core.tree import read_jsonl

runner = CliRunner()


def test_help_and_version() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0 and "demo" in result.output
    result = runner.invoke(app, ["version"])
    assert result.exit_code == 0 and result.output.strip() == __version__


def test_demo_runs_and_writes_trees(tmp_path: Path) -> None:
    result = runner.invoke(app, ["demo", "--prompts", "6", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "ARPO" in result.output and "GRPO" in result.output and "trajectory" in result.output
    trees = list(read_jsonl(tmp_path / "arpo_trees.jsonl"))
    assert len(trees) == 6 and all(len(t) == 8 for t in trees)
    assert all(r.reward is not None for t in trees for r in t.records)


def test_demo_rejects_n_above_m_in_one_sentence() -> None:
    result = runner.invoke(app, ["demo", "--budget", "4", "--global-samples", "6"])
    assert result.exit_code != 0
    assert "--global-samples=6 exceeds --budget=4" in result.output


def test_console_script_is_installed() -> None:
    arpo = Path(sys.executable).parent / "arpo"
    out = subprocess.run([str(arpo), "version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == __version__


def test_config_prints_the_resolved_config_and_rejects_bad_input(tmp_path: Path) -> None:
    result = runner.invoke(app, ["config", "--set", "algo.branching.beta=0.3"])
    assert result.exit_code == 0, result.output
    assert "beta: 0.3" in result.output and "budget: 16" in result.output
    bad = tmp_path / "run.toml"
    bad.write_text("[algo.branching]\nbudget = 2\n")
    result = runner.invoke(app, ["config", "--config", str(bad)])
    assert result.exit_code == 2
    assert "global_samples=8 exceeds budget=2" in result.output
