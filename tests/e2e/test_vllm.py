"""The runtime's client tests against a real vLLM server (not in CI): `make test-vllm` starts one and sets
ARPO_VLLM_URL / ARPO_VLLM_MODEL; without them these tests are skipped."""

from __future__ import annotations

import os

import anyio
import pytest

from arpo_core.runtime.inference import SamplingParams
from arpo_core.runtime.openai_client import OpenAITokenClient
from arpo_core.runtime.server_tokenizer import ServerTokenizer

URL = os.environ.get("ARPO_VLLM_URL")
MODEL = os.environ.get("ARPO_VLLM_MODEL", "")
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not URL, reason="set ARPO_VLLM_URL to a running vLLM server (make test-vllm does)"),
]


def test_token_exact_completion_with_logprobs_and_stop() -> None:
    async def main() -> None:
        assert URL is not None
        client = OpenAITokenClient(URL, MODEL)
        tokenizer = ServerTokenizer(URL, MODEL)
        prompt = await tokenizer.encode_chat(
            [{"role": "user", "content": "Write <python>print(1)</python> and nothing else."}]
        )
        params = SamplingParams(max_tokens=48, stop=("</python>",), logprobs=5, seed=1)
        out = await client.complete(prompt, params)
        assert out.token_ids and out.logprobs is not None and len(out.logprobs) == len(out.token_ids)
        assert out.top_logprobs is not None and all(1 <= len(row) <= 6 for row in out.top_logprobs)
        assert await tokenizer.decode(out.token_ids) == out.text  # the ids are what was sampled
        if out.stop_reason == "</python>":
            assert out.text.endswith("</python>")  # include_stop_str_in_output honoured
        again = await client.complete(prompt, params)
        assert again.token_ids == out.token_ids  # per-request seeds reproduce

    anyio.run(main)


def test_arpo_group_against_vllm() -> None:
    from arpo_core.config import load_config
    from arpo_core.runtime.engine import FinishedGroup, PromptGroup, RolloutEngine
    from arpo_core.testing import FakeToolClient
    from arpo_core.toolcalls import TagProtocol

    config = load_config(
        overrides=["algo.branching.budget=4", "algo.branching.global_samples=2", "rollout.max_response_tokens=128",
                   "algo.entropy.vocab_size=49152"]
    )  # fmt: skip

    async def main() -> list[FinishedGroup]:
        assert URL is not None
        tokenizer = ServerTokenizer(URL, MODEL)
        prompt = await tokenizer.encode_chat(
            [{"role": "user", "content": "Compute 37*48 with python: write <python>print(37*48)</python>."}]
        )
        engine = RolloutEngine(
            [OpenAITokenClient(URL, MODEL)], tokenizer, FakeToolClient({"python": lambda a: "1776"}), TagProtocol(),
            config, vocab_size=49152,
        )  # fmt: skip
        send, receive = anyio.create_memory_object_stream[FinishedGroup](max_buffer_size=2)
        async with anyio.create_task_group() as tg:
            tg.start_soon(engine.run, [PromptGroup("g0", tuple(prompt), "1776")], send)
            async with receive:
                return [g async for g in receive]

    (group,) = anyio.run(main)
    group.tree.validate()
    assert len(group.tree) == 4
    for traj in group.tree.trajectories():
        gen = [s for s in traj.segments if s.kind.value == "generated"]
        assert all(s.logprobs is not None and len(s.logprobs) == len(s.token_ids) for s in gen)
