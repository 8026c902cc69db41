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
