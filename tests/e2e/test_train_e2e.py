"""``arpo train`` end to end on the tiny model: 2 ranks, both backends, the CPU server started by arpo or given.

What must hold: reward and loss are logged every step; the weights reach the inference server (its weight
version follows the trainer and its logprobs change); the staleness bound holds; the run ends with a model, a
plot and a report. The tiny model is random, so nothing here is about learning (the embedded default is).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from arpo_backends.serve.testing import serve_in_thread

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

SMALL = [
    "--model", "tiny", "--no-sft", "--steps", "3",
    "--set", "train.groups_per_step=2", "--set", "train.eval_size=2", "--set", "train.save_every=2",
    "--set", "train.eval_base=true",
    "--set", "algo.branching.budget=4", "--set", "algo.branching.global_samples=2",
    "--set", "rollout.max_response_tokens=160", "--set", "rollout.max_segment_tokens=48",
    "--set", "trainer.optim.lr=1e-2",
]  # fmt: skip
PROMPT = [5, 17, 42, 99, 7, 250]


def _train(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "arpo_core.cli", "train", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def _rows(run: Path, phase: str) -> list[dict[str, Any]]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if r["phase"] == phase]


def _served(base_url: str) -> tuple[list[float], int]:
    body = {"model": "tiny", "prompt": PROMPT, "max_tokens": 1, "temperature": 0, "logprobs": 5}
    req = urllib.request.Request(
        base_url + "/v1/completions", json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=60) as resp:
        logprobs = sorted(json.loads(resp.read())["choices"][0]["logprobs"]["top_logprobs"][0].values())
    with urllib.request.urlopen(base_url + "/health", timeout=60) as resp:
        return logprobs, int(json.loads(resp.read())["weight_version"])


def _check_run(run: Path, steps: int = 3) -> list[dict[str, Any]]:
    train = _rows(run, "train")
    assert [r["step"] for r in train] == list(range(steps))
    for r in train:
        assert -1.0 <= r["reward_mean"] <= 1.1 and r["trajectories"] == 8  # 2 groups × M = 4
        assert r["policy_version"] == r["step"] + 1 and r["staleness_max"] <= 1
        assert "loss" in r and "grad_norm" in r
    assert [r["label"] for r in _rows(run, "eval")] == ["before", "after ARPO"]
    assert (run / "model" / "model.safetensors").is_file() and (run / "training.png").stat().st_size > 10_000
    assert "before → after ARPO" in (run / "report.md").read_text()
    assert sorted(p.name for p in (run / "checkpoints").glob("step-*")) == ["step-000002", "step-000003"]
    from arpo_core.tree.jsonl import read_jsonl

    trees = list(read_jsonl(run / "rollouts.jsonl"))  # every group the steps trained on, and any made after
    assert len(trees) >= sum(r["groups"] for r in train) and all(len(t.records) == 4 for t in trees)
    return train


def test_two_ranks_deepspeed_against_a_given_server(tmp_path: Path) -> None:
    with serve_in_thread("tiny") as server:
        before, version = _served(server.base_url)
        assert version == 0
        proc = _train(
            *SMALL, "--backend", "deepspeed", "--nproc-per-node", "2", "--output-dir", str(tmp_path / "run"),
            "--rollout-url", server.base_url + "/v1", "--served-model-name", "tiny",
        )  # fmt: skip
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
        after, version = _served(server.base_url)
    assert version == 3  # published after each of the 3 steps (the start publishes version 0)
    assert after != pytest.approx(before, abs=1e-5)
    _check_run(tmp_path / "run")


def test_two_ranks_fsdp_with_arpos_own_server_then_resume(tmp_path: Path) -> None:
    run = tmp_path / "run"
    proc = _train(*SMALL, "--backend", "fsdp", "--nproc-per-node", "2", "--output-dir", str(run))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert "starting arpo's CPU inference server" in proc.stdout
    _check_run(run)
    # a finished run can be extended: --resume continues at step 3 with the saved data position
    again = _train(*SMALL[:4], "5", *SMALL[5:], "--backend", "fsdp", "--output-dir", str(run), "--resume")
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-4000:]
    train = _rows(run, "train")
    assert [r["step"] for r in train] == [0, 1, 2, 3, 4]
    assert train[3]["prompts_consumed"] > train[2]["prompts_consumed"]


def test_eval_every_evaluates_the_held_out_set_between_publishes(tmp_path: Path) -> None:
    run = tmp_path / "run"
    extra = ["--set", "train.eval_every=2", "--set", "train.eval_base=false"]
    proc = _train(*SMALL[:4], "4", *SMALL[5:], *extra, "--output-dir", str(run))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    evals = _rows(run, "eval")
    # no evaluation before training (eval_base off); step 4 is the last: its policy is the final evaluation's
    assert [(r["label"], r["step"]) for r in evals] == [("step 2", 2), ("after ARPO", 4)]
    assert evals[0]["questions"] == 2 and (run / "evals" / "step-2.json").is_file()
    assert "eval step 2: " in proc.stdout
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    order = [(r["phase"], r["step"]) for r in rows]
    # the evaluation after step 2 ended before the third step's weights were published (that step's row follows)
    assert order.index(("eval", 2)) < order.index(("train", 2))
    assert all(r["eval_wait_seconds"] >= 0.0 for r in _rows(run, "train"))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--backend", "megatron"], "unknown backend 'megatron'; choose one of: deepspeed, fsdp."),
        (["--model", "/nowhere"], "Unknown model '/nowhere'"),
        (["--rollout-url", "http://127.0.0.1:9/v1"], "the rollout server http://127.0.0.1:9/v1 does not answer"),
        (["--dataset", "missing.jsonl"], "dataset missing.jsonl does not exist"),
        (["--set", "train.bogus=1"], "train.bogus"),
        (["--algo", "ppo"], "--algo 'ppo' is not one of: arpo, grpo."),
        (["--set", "train.eval_dataset=EMPTY"], "has no questions, so nothing can show what training changed"),
    ],
)
def test_bad_input_fails_before_any_long_work(tmp_path: Path, args: list[str], message: str) -> None:
    (tmp_path / "empty.jsonl").write_text("")
    args = [a.replace("EMPTY", str(tmp_path / "empty.jsonl")) for a in args]
    proc = _train("--model", "tiny", *args, "--output-dir", str(tmp_path / "run"), timeout=120)
    assert proc.returncode == 2, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and message in errors[0], proc.stderr
    assert not (tmp_path / "run").exists()


def test_ctrl_c_saves_a_checkpoint_and_exits_cleanly(tmp_path: Path) -> None:
    import signal
    import time

    run = tmp_path / "run"
    args = [*SMALL[:4], "50", *SMALL[5:], "--output-dir", str(run)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "arpo_core.cli", "train", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if (run / "metrics.jsonl").is_file() and _rows(run, "train"):
            break
        time.sleep(0.5)
    assert proc.poll() is None, proc.communicate()[1][-3000:]
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err[-3000:]
    assert "interrupted: checkpoint saved" in out
    steps = [r["step"] for r in _rows(run, "train")]
    assert 1 <= len(steps) < 50
    saved = sorted(p.name for p in (run / "checkpoints").glob("step-*"))
    assert saved[-1] == f"step-{len(steps):06d}"  # the step that was running finished, then it saved


def test_algo_grpo_samples_every_trajectory_from_the_prompt_even_with_aepo_on(tmp_path: Path) -> None:
    args = ["--algo", "grpo", "--set", "algo.branching.dynamic_global_samples=true", "--print-config"]
    proc = _train("--model", "tiny", *args, "--set", "algo.branching.budget=6", timeout=120)
    assert proc.returncode == 0, proc.stderr
    branching = proc.stdout.split("[algo.branching]", 1)[1].split("\n[", 1)[0]
    assert "budget = 6" in branching and "global_samples = 6" in branching
    assert "dynamic_global_samples = false" in branching
