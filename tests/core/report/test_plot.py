"""Plots from hand-written metrics files: a valid PNG, runs overlaid, one clear sentence without matplotlib."""

from __future__ import annotations

import json
import math
import struct
import sys
from pathlib import Path
from typing import Any

import pytest

from arpo_core.report import MissingPackageError, latest_rows, plot_runs, plot_training

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _write(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _run(path: Path, gain: float, steps: int = 30) -> Path:
    rows: list[dict[str, Any]] = [
        {"step": 0, "phase": "eval", "time": 0.0, "label": "base", "pass@1": 0.2, "mean_f1": 0.3,
         "tool_calls_per_episode": 0.5, "format_errors": 4},
    ]  # fmt: skip
    for step in range(1, steps + 1):
        reward = 0.2 + gain * step / steps + 0.03 * math.sin(step)
        rows.append(
            {"step": step, "phase": "train", "time": float(step), "reward_mean": reward, "accuracy": reward,
             "tool_calls_per_trajectory": 0.5 + step / steps, "trajectories": 16, "loss": 0.1, "grad_norm": 1.0}
        )  # fmt: skip
    rows[5]["reward_mean"] = "NaN"  # a non-finite value as the JSONL sink writes it: a gap, not a crash
    rows[6]["loss"] = "Infinity"
    rows.append(
        {"step": steps, "phase": "eval", "time": 99.0, "label": "after ARPO", "pass@1": 0.2 + gain, "mean_f1": 0.5,
         "tool_calls_per_episode": 1.4, "format_errors": 0}
    )  # fmt: skip
    return _write(path, rows)


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_plot_training_writes_png(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    metrics = _run(tmp_path / "arpo" / "metrics.jsonl", gain=0.5)
    out = plot_training(metrics, tmp_path / "plots" / "training.png")
    assert out == tmp_path / "plots" / "training.png"
    assert out.read_bytes()[:8] == PNG_SIGNATURE
    assert out.stat().st_size > 20_000
    width, height = _png_size(out)
    assert width > 600 and height > 800  # three panels stacked (two are about 600 pixels high)


def test_plot_training_without_evaluations_has_two_panels(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    rows = [{"step": s, "phase": "train", "reward_mean": s / 10, "tool_calls_per_trajectory": 1.0} for s in range(1, 6)]
    out = plot_training(_write(tmp_path / "m.jsonl", rows), tmp_path / "t.png")
    _, height = _png_size(out)
    three = plot_training(_run(tmp_path / "r" / "metrics.jsonl", gain=0.3), tmp_path / "t3.png")
    assert height < _png_size(three)[1]
    assert out.stat().st_size > 10_000


def test_plot_runs_overlays_two_runs(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    arpo = _run(tmp_path / "arpo" / "metrics.jsonl", gain=0.5)
    grpo = _run(tmp_path / "grpo" / "metrics.jsonl", gain=0.3)
    two = plot_runs({"ARPO": arpo, "GRPO": grpo}, tmp_path / "compare.png")
    assert two.read_bytes()[:8] == PNG_SIGNATURE and two.stat().st_size > 20_000
    three = plot_runs(
        {"ARPO": arpo, "GRPO": grpo}, tmp_path / "compare3.png", metrics=("reward_mean", "loss", "pass@1")
    )  # pass@1 only exists in eval rows
    assert _png_size(three)[1] > _png_size(two)[1]
    one = plot_runs({"ARPO": arpo}, tmp_path / "one.png", metrics=("no_such_metric",))
    assert one.read_bytes()[:8] == PNG_SIGNATURE


def test_plot_rejects_empty_input(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    empty = _write(tmp_path / "empty.jsonl", [{"step": 1, "phase": "train", "loss": 0.1}])
    with pytest.raises(ValueError, match="nothing to plot"):
        plot_training(empty, tmp_path / "x.png")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        plot_training(tmp_path / "missing.jsonl", tmp_path / "x.png")
    with pytest.raises(ValueError, match="at least one run"):
        plot_runs({}, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_missing_matplotlib_is_one_sentence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(sys.modules):
        if name.split(".")[0] == "matplotlib":
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    metrics = _run(tmp_path / "metrics.jsonl", gain=0.5)
    with pytest.raises(MissingPackageError) as info:
        plot_training(metrics, tmp_path / "t.png")
    assert str(info.value) == "plotting needs the matplotlib package: pip install matplotlib"
    with pytest.raises(MissingPackageError, match="pip install matplotlib"):
        plot_runs({"a": metrics}, tmp_path / "r.png")


def test_latest_rows_prefers_the_resumed_run() -> None:
    rows = [
        {"step": 1, "phase": "train", "reward_mean": 0.1},
        {"step": 2, "phase": "train", "reward_mean": 0.2},
        {"step": 2, "phase": "eval", "label": "mid", "pass@1": 0.5},
        {"step": 2, "phase": "train", "reward_mean": 0.25},  # after resuming from the step-1 checkpoint
        {"step": 3, "phase": "train", "reward_mean": 0.3},
    ]
    kept = latest_rows(rows)
    assert [(r["phase"], r["step"], r.get("reward_mean")) for r in kept] == [
        ("train", 1, 0.1),
        ("eval", 2, None),
        ("train", 2, 0.25),
        ("train", 3, 0.3),
    ]
