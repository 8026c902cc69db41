"""Bad requests get vLLM's 400 (404 for an unknown model) with ``{"error": {message, type, param, code}}``."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

openai = pytest.importorskip("openai")
pytest.importorskip("fastapi")

from arpo_backends.serve.testing import RunningServer, serve_in_thread  # noqa: E402


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    with serve_in_thread("tiny") as running:
        yield running


def post(server: RunningServer, path: str, body: bytes) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(server.base_url + path, data=body, headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


BAD_COMPLETIONS = [
    ({"prompt": [1, 2, 600]}, "Token id 600 in the prompt is out of vocabulary", "prompt"),
    ({"prompt": [[1, 2], [3, 100000]]}, "Token id 100000 in the prompt is out of vocabulary", "prompt"),
    ({"prompt": [1, 2, -3]}, "greater than or equal to 0", None),
    ({"prompt": [1, 2], "max_tokens": 0}, "max_tokens must be at least 1, got 0", "max_tokens"),
    ({"prompt": [1, 2], "logprobs": 21}, "Requested sample logprobs of 21", "logprobs"),
    ({"prompt": [1] * 2049}, "maximum context length is 2048 tokens", "prompt"),
    ({"prompt": [1] * 2000, "max_tokens": 100}, "you requested 2100 tokens (2000 in the messages, 100", "max_tokens"),
    ({"prompt": ""}, "must be provided and non-empty", "prompt"),
    ({"prompt": [1, 2], "echo": True}, "echo=True is not supported", "echo"),
    ({"prompt": [1, 2], "presence_penalty": 0.5}, "presence_penalty=0.5 is not supported", "presence_penalty"),
    ({"prompt": [1, 2], "stream": True}, "stream=True is not supported", "stream"),
    ({"prompt": [1, 2], "top_p": 0}, "top_p must be in (0, 1], got 0.0", "top_p"),
    ({"prompt": [1, 2], "temperature": -1}, "temperature must be non-negative", "temperature"),
    ({"prompt": [1, 2], "top_k": -5}, "top_k must be 0 or -1 (disable), or at least 1, got -5", "top_k"),
    ({"prompt": [1, 2], "n": 0}, "n must be at least 1, got 0", "n"),
    ({"prompt": [1, 2], "stop_token_ids": [9999]}, "Token id 9999 in stop_token_ids is out of vocabulary", None),
    ({"prompt": [1, 2], "stop": [""]}, "stop strings must not be empty", "stop"),
]


@pytest.mark.anyio
@pytest.mark.parametrize(("body", "message", "param"), BAD_COMPLETIONS)
async def test_bad_completion_requests_are_400_with_a_clear_message(
    server: RunningServer, body: dict[str, Any], message: str, param: str | None
) -> None:
    body = dict(body)
    prompt = body.pop("prompt")
    async with openai.AsyncOpenAI(base_url=server.base_url + "/v1", api_key="x", max_retries=0) as c:
        with pytest.raises(openai.BadRequestError) as caught:
            await c.completions.create(model=server.model, prompt=prompt, extra_body=body)
    err = caught.value
    assert err.status_code == 400
    assert message in err.body["message"], err.body
    assert err.body["type"] == "BadRequestError" and err.body["code"] == 400
    if param is not None:
        assert err.body["param"] == param


@pytest.mark.anyio
async def test_unknown_model_is_404(server: RunningServer) -> None:
    async with openai.AsyncOpenAI(base_url=server.base_url + "/v1", api_key="x", max_retries=0) as c:
        with pytest.raises(openai.NotFoundError) as caught:
            await c.completions.create(model="gpt-9", prompt=[1, 2])
    assert caught.value.body["message"] == "The model `gpt-9` does not exist."


@pytest.mark.anyio
async def test_bad_chat_requests(server: RunningServer) -> None:
    cases = [
        ({"messages": []}, "messages must not be empty"),
        ({"messages": [{"content": "no role"}]}, "has no 'role'"),
        ({"messages": [{"role": "user", "content": "hi"}], "top_logprobs": 3}, "`logprobs` must be set to true"),
        ({"messages": [{"role": "user", "content": "hi"}], "tool_choice": "required"}, "tool_choice='required'"),
        (
            {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
            "takes text only",
        ),
    ]
    for body, message in cases:
        status, reply = post(server, "/v1/chat/completions", json.dumps(body).encode())
        assert status == 400 and message in reply["error"]["message"], (body, reply)


def test_malformed_bodies_are_400(server: RunningServer) -> None:
    status, reply = post(server, "/v1/completions", b"{not json")
    assert status == 400 and reply["error"]["type"] == "BadRequestError"
    status, reply = post(server, "/tokenize", b"[1, 2]")
    assert status == 400 and "JSON object" in reply["error"]["message"]
    status, reply = post(server, "/tokenize", json.dumps({"prompt": 5}).encode())
    assert status == 400 and "prompt" in reply["error"]["message"]
    status, reply = post(server, "/detokenize", json.dumps({"tokens": [1, 4096]}).encode())
    assert status == 400 and "Token id 4096 in tokens is out of vocabulary" in reply["error"]["message"]
