"""The rollout runtime against arpo's CPU server over real HTTP: token-exact trees, logprobs, masks, M per group.

A tiny random model (locally trained byte-level BPE) answers; its text is gibberish, which is fine: what is
checked is the plumbing — the ids in the tree are exactly the ids the server sampled, tool-result tokens carry
loss mask 0, logprobs line up with the ids, and every ARPO group has exactly M trajectories.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

pytest.importorskip("fastapi", reason="the CPU server needs arpo-backends[serve]")

from arpo_backends.serve.testing import serve_in_thread
from arpo_core.config import load_config
from arpo_core.runtime.engine import FinishedGroup, PromptGroup, RolloutEngine
from arpo_core.runtime.inference import SamplingParams
from arpo_core.runtime.openai_client import OpenAITokenClient
from arpo_core.runtime.server_tokenizer import ServerTokenizer
from arpo_core.testing import FakeToolClient
from arpo_core.toolcalls import TagProtocol
from arpo_core.tree import SegmentKind, read_jsonl

pytestmark = [pytest.mark.e2e]
ARPO = str(Path(sys.executable).parent / "arpo")


def test_token_client_and_tokenizer_against_the_server() -> None:
    async def main(base: str) -> None:
        client = OpenAITokenClient(base + "/v1", "tiny")
        tokenizer = ServerTokenizer(base + "/v1", "tiny")
        prompt = await tokenizer.encode_chat([{"role": "user", "content": "What is 2 + 2?"}])
        out = await client.complete(prompt, SamplingParams(max_tokens=12, logprobs=5, seed=3))
        assert len(out.token_ids) == len(out.logprobs or ()) == len(out.top_logprobs or ()) > 0
        assert await tokenizer.decode(out.token_ids) == out.text  # the ids are the text the server produced
        again = await client.complete(prompt, SamplingParams(max_tokens=12, logprobs=5, seed=3))
        assert again.token_ids == out.token_ids  # seeded requests reproduce
        await client.aclose()
        await tokenizer.aclose()

    with serve_in_thread("tiny") as server:
        anyio.run(main, server.base_url)


def test_arpo_groups_are_token_exact_with_masked_tool_results() -> None:
    config = load_config(
        overrides=[
            "algo.branching.budget=4", "algo.branching.global_samples=2", "rollout.max_response_tokens=96",
            "rollout.max_segment_tokens=24",
        ]
    )  # fmt: skip

    async def main(base: str) -> list[FinishedGroup]:
        tokenizer = ServerTokenizer(base + "/v1", "tiny")
        client = OpenAITokenClient(base + "/v1", "tiny")
        # the tiny model rarely closes a tag by itself: every prompt ends inside an open <python> call, so the
        # first segment that emits "</python>" is a call (and entropy / branching have tool steps to act on)
        prompts = [
            PromptGroup(f"q{i}", tuple(await tokenizer.encode(f"Question {i}. <think>compute</think><python>print(")))
            for i in range(2)
        ]
        tools = FakeToolClient({"python": lambda args: "4"})
        engine = RolloutEngine([client], tokenizer, tools, TagProtocol(), config, vocab_size=1)
        engine.vocab_size = await _vocab(base)
        send, receive = anyio.create_memory_object_stream[FinishedGroup](max_buffer_size=4)
        async with anyio.create_task_group() as tg:
            tg.start_soon(engine.run, prompts, send)
            async with receive:
                return [g async for g in receive]

    with serve_in_thread("tiny") as server:
        groups = anyio.run(main, server.base_url)
    for group in groups:
        tree = group.tree
        tree.validate()
        assert len(tree) == 4
        for traj in tree.trajectories():
            assert len(traj.loss_mask) == len(traj.token_ids)
            for seg in traj.segments:
                if seg.kind is SegmentKind.TOOL:
                    assert seg.logprobs is None
                else:
                    assert seg.logprobs is not None and len(seg.logprobs) == len(seg.token_ids)
            tool_tokens = sum(len(s.token_ids) for s in traj.segments if s.kind is SegmentKind.TOOL)
            assert int((traj.loss_mask == 0).sum()) == tool_tokens


async def _vocab(base: str) -> int:
    import httpx2

    async with httpx2.AsyncClient() as http:
        return int((await http.get(base + "/v1/models")).json()["data"][0]["vocab_size"])


def test_arpo_rollout_cli_writes_trees(tmp_path: Path) -> None:
    out = tmp_path / "trees.jsonl"
    with serve_in_thread("tiny") as server:
        proc = subprocess.run(
            [ARPO, "rollout", "--base-url", server.base_url + "/v1", "--model", "tiny", "--dataset", "builtin:arith",
             "--limit", "2", "--no-tools", "--out", str(out), "--set", "algo.branching.budget=2",
             "--set", "algo.branching.global_samples=2", "--set", "rollout.max_response_tokens=32"],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    trees = list(read_jsonl(out))
    assert len(trees) == 2 and all(len(t) == 2 for t in trees)
    assert "trajectories" in proc.stdout and json.loads(out.read_text().splitlines()[0])["format"] == 1


def test_cancelling_a_request_aborts_it_on_the_server() -> None:
    async def main(base: str) -> None:
        import httpx2

        client = OpenAITokenClient(base + "/v1", "tiny")
        params = SamplingParams(max_tokens=2000, logprobs=None)  # far longer than the test waits
        async with httpx2.AsyncClient() as http:

            async def running() -> int:
                return int((await http.get(base + "/health")).json()["running"])

            with anyio.move_on_after(30):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(client.complete, [5, 6, 7], params)
                    while await running() == 0:  # noqa: ASYNC110 - polling the server's observable state
                        await anyio.sleep(0.02)
                    tg.cancel_scope.cancel()  # the caller gives up: the HTTP request is dropped
            with anyio.fail_after(30):
                while await running() > 0:  # noqa: ASYNC110 - the server notices the disconnect and aborts
                    await anyio.sleep(0.02)
            decoded = int((await http.get(base + "/health")).json()["decoded_tokens"])
            assert decoded < 1000  # aborted long before its 2000 tokens, not left to run to the end
        await client.aclose()

    with serve_in_thread("tiny") as server:
        anyio.run(main, server.base_url)
