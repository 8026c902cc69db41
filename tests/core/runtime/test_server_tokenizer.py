"""ServerTokenizer speaks vLLM's /tokenize and /detokenize (checked against a fake transport)."""

from __future__ import annotations

import json
from typing import Any

import httpx2
import pytest

from arpo_core.runtime.inference import InferenceError
from arpo_core.runtime.server_tokenizer import ServerTokenizer

pytestmark = pytest.mark.anyio


def fake(seen: list[tuple[str, dict[str, Any]]]) -> httpx2.AsyncClient:
    def handler(request: httpx2.Request) -> httpx2.Response:
        body = json.loads(request.content)
        seen.append((request.url.path, body))
        if request.url.path == "/tokenize":
            tokens = [ord(c) for c in body.get("prompt", "")] or [1, 2, 3]
            return httpx2.Response(200, json={"tokens": tokens, "count": len(tokens), "max_model_len": 2048})
        if request.url.path == "/detokenize":
            return httpx2.Response(200, json={"prompt": "".join(chr(t) for t in body["tokens"])})
        return httpx2.Response(404, text="not found")

    return httpx2.AsyncClient(transport=httpx2.MockTransport(handler))


async def test_routes_and_fields() -> None:
    seen: list[tuple[str, dict[str, Any]]] = []
    tok = ServerTokenizer("http://srv.test/v1", "m", http_client=fake(seen))
    assert await tok.encode("ab") == [97, 98]
    assert await tok.decode([104, 105]) == "hi"
    assert await tok.encode_chat([{"role": "user", "content": "x"}]) == [1, 2, 3]
    assert seen[0] == ("/tokenize", {"model": "m", "prompt": "ab", "add_special_tokens": False})
    assert seen[1] == ("/detokenize", {"model": "m", "tokens": [104, 105]})
    assert seen[2][1]["add_generation_prompt"] is True and seen[2][1]["messages"][0]["role"] == "user"


async def test_errors_name_the_route() -> None:
    def down(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ConnectError("refused")

    tok = ServerTokenizer("http://srv.test", "m", http_client=httpx2.AsyncClient(transport=httpx2.MockTransport(down)))
    with pytest.raises(InferenceError, match=r"http://srv.test/tokenize cannot be reached"):
        await tok.encode("x")
    bad = httpx2.AsyncClient(transport=httpx2.MockTransport(lambda r: httpx2.Response(400, text="bad request")))
    with pytest.raises(InferenceError, match="answered 400: bad request"):
        await ServerTokenizer("http://srv.test", "m", http_client=bad).decode([1])
