"""OpenAITokenClient against a fake vLLM behind httpx2.MockTransport: exact request fields, parsing, retries."""

from __future__ import annotations

import json
import math
from typing import Any

import httpx2
import pytest

from arpo_core.runtime.inference import InferenceError, SamplingParams
from arpo_core.runtime.openai_client import OpenAITokenClient, ServerUnavailableError

pytestmark = pytest.mark.anyio


def vllm_response(**choice: Any) -> dict[str, Any]:
    base = {
        "index": 0,
        "text": "<python>1</python>",
        "token_ids": [11, 12, 13],
        "finish_reason": "stop",
        "stop_reason": "</python>",
        "logprobs": {
            "tokens": ["<python>", "1", "</python>"],
            "token_logprobs": [-0.5, -1.0, -9999.0],
            "top_logprobs": [{"<python>": -0.5, "x": -1.2}, {"1": -1.0, "2": -0.7}, {"</python>": -9999.0}],
            "text_offset": [0, 8, 9],
        },
    }
    base.update(choice)
    return {
        "id": "cmpl-1",
        "object": "text_completion",
        "created": 0,
        "model": "m",
        "choices": [base],
        "usage": {"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6},
    }


def client_for(handler: Any, **kw: Any) -> OpenAITokenClient:
    transport = httpx2.MockTransport(handler)
    return OpenAITokenClient(
        "http://vllm.test/v1", "m", http_client=httpx2.AsyncClient(transport=transport), backoff_s=0.001, **kw
    )


async def test_request_fields_and_token_exact_parsing() -> None:
    seen: list[dict[str, Any]] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append(json.loads(request.content))
        assert request.url.path == "/v1/completions"
        return httpx2.Response(200, json=vllm_response())

    client = client_for(handler)
    params = SamplingParams(max_tokens=64, stop=("</python>", "</search>"), logprobs=5, seed=7, top_k=40)
    out = await client.complete([1, 2, 3], params)
    body = seen[0]
    assert body["prompt"] == [1, 2, 3] and body["max_tokens"] == 64 and body["logprobs"] == 5
    assert body["stop"] == ["</python>", "</search>"] and body["seed"] == 7 and body["n"] == 1
    assert body["return_token_ids"] is True and body["include_stop_str_in_output"] is True
    assert body["skip_special_tokens"] is False and body["top_k"] == 40
    assert out.token_ids == (11, 12, 13) and out.text == "<python>1</python>"
    assert out.logprobs == (-0.5, -1.0, -9999.0)
    assert out.top_logprobs == ((-0.5, -1.2), (-1.0, -0.7), (-9999.0,))
    assert (out.finish_reason, out.stop_reason) == ("stop", "</python>")


async def test_no_logprobs_requested_gives_none() -> None:
    client = client_for(lambda r: httpx2.Response(200, json=vllm_response(logprobs=None)))
    out = await client.complete([1], SamplingParams(max_tokens=3, logprobs=None))
    assert out.logprobs is None and out.top_logprobs is None


async def test_retries_503_and_429_then_succeeds() -> None:
    calls = {"n": 0}

    def handler(request: httpx2.Request) -> httpx2.Response:
        calls["n"] += 1
        if calls["n"] == 1:
            return httpx2.Response(503, json={"error": {"message": "overloaded"}})
        if calls["n"] == 2:
            return httpx2.Response(429, headers={"retry-after": "0"}, json={"error": {"message": "slow down"}})
        return httpx2.Response(200, json=vllm_response())

    out = await client_for(handler).complete([1], SamplingParams(max_tokens=3))
    assert calls["n"] == 3 and out.token_ids == (11, 12, 13)


async def test_errors_are_clear_and_classified() -> None:
    bad = client_for(lambda r: httpx2.Response(400, json={"error": {"message": "token id 99999 is out of vocabulary"}}))
    with pytest.raises(InferenceError, match=r"refused the request with 400: token id 99999 is out of vocabulary"):
        await bad.complete([99999], SamplingParams(max_tokens=3))
    down = client_for(lambda r: httpx2.Response(503, json={}), max_attempts=2)
    with pytest.raises(ServerUnavailableError, match=r"answered 503 .* after 2 attempt"):
        await down.complete([1], SamplingParams(max_tokens=3))

    def refuse(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ConnectError("connection refused")

    with pytest.raises(ServerUnavailableError, match="cannot be reached"):
        await client_for(refuse).complete([1], SamplingParams(max_tokens=3))


async def test_a_server_without_token_ids_is_refused_with_the_reason() -> None:
    response = vllm_response()
    del response["choices"][0]["token_ids"]
    client = client_for(lambda r: httpx2.Response(200, json=response))
    with pytest.raises(InferenceError, match="returned no token_ids; arpo trains on the sampled ids"):
        await client.complete([1], SamplingParams(max_tokens=3))


async def test_misaligned_logprobs_are_refused() -> None:
    bad = vllm_response(token_ids=[11, 12])
    client = client_for(lambda r: httpx2.Response(200, json=bad))
    with pytest.raises(InferenceError, match="2 token ids but logprobs for 3 positions"):
        await client.complete([1], SamplingParams(max_tokens=3))


def test_sampling_params_validation() -> None:
    with pytest.raises(ValueError, match="max_tokens=0"):
        SamplingParams(max_tokens=0)
    with pytest.raises(ValueError, match="logprobs=21"):
        SamplingParams(max_tokens=1, logprobs=21)
    assert math.isfinite(SamplingParams(max_tokens=1).temperature)
