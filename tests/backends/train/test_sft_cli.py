"""``arpo sft``: bad input fails fast with one sentence; training is rank- and backend-invariant; resume is exact."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ARPO = [sys.executable, "-m", "arpo_core.cli"]


def _demos(path: Path, n: int = 24) -> Path:
    rows = []
    for i in range(n):
        a, b = 10 + i, 7 + i % 5
        answer = f"<python>print({a}*{b})</python> <result>\n{a * b}\n</result><answer>\\boxed{{{a * b}}}</answer>"
        rows.append(
            {
                "messages": [
                    {"role": "system", "content": "Use tools."},
                    {"role": "user", "content": f"What is {a} * {b}?"},
                    {"role": "assistant", "content": answer},
                ]
            }
        )
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _sft(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([*ARPO, "sft", *args], capture_output=True, text=True, timeout=timeout, env=env)


def _losses(folder: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (folder / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--data", "missing.jsonl"], "--data missing.jsonl does not exist; pass a .jsonl, .json or .parquet file"),
        (["--backend", "megatron"], "unknown backend 'megatron'; choose one of: deepspeed, fsdp."),
        (["--model", "/nowhere/model"], "Unknown model '/nowhere/model'"),
        (["--set", "optim.lr=-1"], "optim.lr"),
        (["--nproc-per-node", "0"], "--nproc-per-node=0"),
        (["--data", "BAD"], "line 1: 'messages' has no assistant turn"),
    ],
)
def test_bad_input_is_one_sentence_and_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    demos = _demos(tmp_path / "demos.jsonl")
    (tmp_path / "bad.jsonl").write_text('{"messages": [{"role": "user", "content": "hi"}]}\n')
    args = [str(tmp_path / "bad.jsonl") if a == "BAD" else a for a in args]
    if "--data" not in args:
        args = ["--data", str(demos), *args]
    if "--model" not in args:
        args += ["--model", "tiny"]
    proc = _sft(*args, "--output-dir", str(tmp_path / "out"), timeout=120)
    assert proc.returncode == 2, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and message in errors[0], proc.stderr
    assert not (tmp_path / "out").exists()  # nothing started


@pytest.mark.slow
def test_two_rank_deepspeed_matches_one_rank_fsdp_and_exports(tmp_path: Path) -> None:
    demos = _demos(tmp_path / "demos.jsonl")
    common = ["--data", str(demos), "--model", "tiny", "--epochs", "2", "--batch-size", "8", "--lr", "1e-3"]
    one = _sft(*common, "--output-dir", str(tmp_path / "one"))
    assert one.returncode == 0, one.stderr[-3000:]
    two = _sft(*common, "--output-dir", str(tmp_path / "two"), "--backend", "deepspeed", "--nproc-per-node", "2")
    assert two.returncode == 0, two.stderr[-3000:]
    a, b = _losses(tmp_path / "one"), _losses(tmp_path / "two")
    assert len(a) == 6 and a == pytest.approx(b, rel=1e-5)
    assert a[-1] < a[0] - 0.5  # it learns the demonstrations
    for run in ("one", "two"):
        assert (tmp_path / run / "model" / "model.safetensors").is_file()
        assert (tmp_path / run / "model" / "tokenizer.json").is_file()
    # DeepSpeed is told the accelerator is the CPU (name_cpu_accelerator) instead of warning it found no GPU
    for proc in (one, two):
        assert "unable to detect" not in proc.stdout + proc.stderr


@pytest.mark.slow
def test_resume_continues_exactly(tmp_path: Path) -> None:
    demos = _demos(tmp_path / "demos.jsonl")
    common = ["--data", str(demos), "--model", "tiny", "--batch-size", "8", "--lr", "1e-3"]
    straight = _sft(*common, "--epochs", "2", "--output-dir", str(tmp_path / "straight"))
    assert straight.returncode == 0, straight.stderr[-3000:]
    first = _sft(*common, "--epochs", "1", "--output-dir", str(tmp_path / "split"))
    assert first.returncode == 0, first.stderr[-3000:]
    second = _sft(*common, "--epochs", "2", "--output-dir", str(tmp_path / "split"), "--resume", "latest")
    assert second.returncode == 0, second.stderr[-3000:]
    assert "resuming at update 3" in second.stdout
    assert _losses(tmp_path / "split") == pytest.approx(_losses(tmp_path / "straight"), rel=1e-6)


def test_name_cpu_accelerator_only_where_no_gpu_and_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from arpo_backends.train.dist import name_cpu_accelerator

    monkeypatch.delenv("DS_ACCELERATOR", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    name_cpu_accelerator()
    assert os.environ["DS_ACCELERATOR"] == "cpu"
    monkeypatch.setenv("DS_ACCELERATOR", "xpu")  # the user's choice stays
    name_cpu_accelerator()
    assert os.environ["DS_ACCELERATOR"] == "xpu"
    monkeypatch.delenv("DS_ACCELERATOR")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # a GPU: DeepSpeed detects CUDA itself
    name_cpu_accelerator()
    assert "DS_ACCELERATOR" not in os.environ
