"""`arpo eval` end to end against a small OpenAI-compatible chat server over real HTTP, and the metrics."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from arpo_core.data.builtin import arithmetic_samples
from arpo_core.evaluation import is_correct, pass_at_k

ARPO = str(Path(sys.executable).parent / "arpo")

SERVER = r"""
import re, sys, uvicorn
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

async def chat(request):
    body = await request.json()
    question = body["messages"][-1]["content"]
    expr = re.search(r"What is (.+)\? Give", question).group(1)
    value = eval(expr)  # the test's own arithmetic questions only
    if value % 2:  # answer odd results wrongly, so accuracy is exactly the share of even results
        value += 1
    content = f"<think>easy</think><answer>\\boxed{{{value}}}</answer>"
    return JSONResponse({"id": "c", "object": "chat.completion", "created": 0, "model": body["model"],
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}})

app = Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
"""


def test_pass_at_k_by_hand() -> None:
    # n = 10, c = 3, k = 2: 1 - C(7,2)/C(10,2) = 1 - 21/45 = 0.5333...
    assert pass_at_k(10, 3, 2) == pytest.approx(24 / 45)
    assert pass_at_k(5, 1, 1) == pytest.approx(0.2) and pass_at_k(5, 0, 5) == 0.0 and pass_at_k(5, 1, 5) == 1.0
    with pytest.raises(ValueError, match="n=3, c=4"):
        pass_at_k(3, 4, 1)


def test_correctness_uses_the_boxed_answer() -> None:
    assert is_correct("<answer> it is \\boxed{0.5} </answer>", ["\\frac{1}{2}"])[0]
    assert is_correct("\\boxed{Frank Lowy}", ["frank lowy"])[0]
    assert not is_correct("<answer>\\boxed{7}</answer>", ["8"])[0]


@pytest.fixture
def chat_server(tmp_path: Path) -> Iterator[str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    script = tmp_path / "server.py"
    script.write_text(SERVER)
    proc = subprocess.Popen([sys.executable, str(script), str(port)])
    deadline = time.monotonic() + 30
    while True:  # wait until the port accepts connections
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            assert proc.poll() is None and time.monotonic() < deadline, "chat server did not start"
            time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/v1"
    proc.terminate()
    proc.wait(timeout=10)


def test_arpo_eval_against_a_chat_endpoint(chat_server: str, tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    proc = subprocess.run(
        [ARPO, "eval", "--base-url", chat_server, "--model", "m", "--dataset", "builtin:arith", "--limit", "12",
         "--k", "2", "--no-tools", "--out", str(out)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text())
    golds = [int(s.ground_truth[0]) for s in arithmetic_samples(12)]
    expected = sum(g % 2 == 0 for g in golds) / 12  # the server answers exactly the even results right
    assert report["summary"]["pass@1"] == pytest.approx(expected)
    assert report["summary"]["pass@2"] == pytest.approx(expected)  # deterministic server: k samples agree
    assert report["summary"]["episodes"] == 24 and report["summary"]["tokens_per_episode"] == 15
    # the training reward of each episode: well formed, no tool, so F1 of the boxed integer: 1 or 0, no bonus
    assert report["summary"]["mean_reward"] == pytest.approx(expected)
    for q in report["questions"]:
        assert q["reward"] == [1.0 if c else 0.0 for c in q["correct"]]
    # 95% intervals over the 12 questions: Wilson for pass@1 (the roots of (p̂ − π)² = z²π(1 − π)/12), t for the
    # per-question mean reward (0/1 values: s² = 12·p̂(1 − p̂)/11, t(0.975, 11) = 2.201)
    summary, z = report["summary"], 1.959963984540054
    for bound in (summary["pass@1_low"], summary["pass@1_high"]):
        assert (expected - bound) ** 2 == pytest.approx(z * z * bound * (1 - bound) / 12)
    half = 2.201 * (12 * expected * (1 - expected) / 11) ** 0.5 / 12**0.5
    assert (summary["mean_reward_low"], summary["mean_reward_high"]) == pytest.approx(
        (expected - half, expected + half)
    )
    assert "pass@1" in proc.stdout and re.search(r"report: .*report.json", proc.stdout)


def test_arpo_eval_bad_input_is_one_sentence(tmp_path: Path) -> None:
    proc = subprocess.run(
        [ARPO, "eval", "--model", "m", "--dataset", str(tmp_path / "none.jsonl"), "--no-tools"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 2 and "does not exist" in proc.stderr
    proc = subprocess.run(
        [ARPO, "eval", "--model", "m", "--dataset", "builtin:arith", "--limit", "1", "--no-tools",
         "--base-url", "http://127.0.0.1:9/v1"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 2 and "every episode failed" in proc.stderr and "cannot be reached" in proc.stderr
