"""``ServerTokenizer``: the served model's own tokenizer, through vLLM's ``/tokenize`` and ``/detokenize``.

Asking the server keeps prompts and tool results tokenised exactly as the model being sampled expects, with no
tokenizer files (and no transformers) on the rollout side. vLLM serves these routes at the root, beside
``/v1``; arpo's CPU server mirrors them.

    POST /tokenize    {"model", "prompt": text, "add_special_tokens": false}          → {"tokens": [...]}
    POST /tokenize    {"model", "messages": [...], "add_generation_prompt": true}     → {"tokens": [...]}
    POST /detokenize  {"model", "tokens": [...]}                                       → {"prompt": text}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import httpx2

from arpo_core.runtime.inference import InferenceError

__all__ = ["ServerTokenizer"]


class ServerTokenizer:
    """``Tokenizer`` backed by an OpenAI-compatible server's tokenize routes."""

    def __init__(self, base_url: str, model: str, *, timeout: float = 30.0, http_client: Any = None) -> None:
        root = base_url.rstrip("/")
        self.root = root[: -len("/v1")] if root.endswith("/v1") else root
        self.model = model
        self._http: httpx2.AsyncClient = http_client or httpx2.AsyncClient(timeout=timeout)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _post(self, route: str, body: Mapping[str, Any]) -> dict[str, Any]:
        url = f"{self.root}{route}"
        try:
            response = await self._http.post(url, json={"model": self.model, **body})
        except httpx2.HTTPError as err:
            raise InferenceError(
                f"{url} cannot be reached ({type(err).__name__}); check that the server is up."
            ) from None
        if response.status_code != 200:
            raise InferenceError(f"{url} answered {response.status_code}: {response.text[:200]}")
        data: dict[str, Any] = response.json()
        return data

    async def encode(self, text: str) -> list[int]:
        """Ids of ``text`` with no special tokens added (tool results are spliced into a running context)."""
        data = await self._post("/tokenize", {"prompt": text, "add_special_tokens": False})
        return [int(t) for t in data["tokens"]]

    async def encode_chat(
        self, messages: Sequence[Mapping[str, Any]], tools: Sequence[Mapping[str, Any]] | None = None
    ) -> list[int]:
        """Ids of a chat prompt after the model's chat template, ending with the assistant's generation prompt."""
        body: dict[str, Any] = {"messages": list(messages), "add_generation_prompt": True}
        if tools:
            body["tools"] = list(tools)
        data = await self._post("/tokenize", body)
        return [int(t) for t in data["tokens"]]

    async def decode(self, token_ids: Sequence[int]) -> str:
        data = await self._post("/detokenize", {"tokens": [int(t) for t in token_ids]})
        return str(data["prompt"])
