"""``OpenAITokenClient``: token-exact completions from vLLM (or any server with vLLM's extensions).

One request = one ``POST /v1/completions`` through the official ``openai`` client, with the prompt as a list of
token ids and vLLM's extensions in ``extra_body``:

* ``return_token_ids: true`` — the response's ``choices[0].token_ids`` are the sampled ids; arpo trains on them,
  never on re-encoded ``text`` (retokenisation drift is the classic agent-RL bug);
* ``logprobs: k`` (k ≤ 20) — behaviour logprobs and top-k per position (``-inf`` arrives as ``-9999.0``);
* ``include_stop_str_in_output: true`` — the tool's closing tag stays in the ids and text the model produced;
* ``skip_special_tokens: false``; ``max_tokens`` always set (vLLM's default is 16); an optional per-request seed.

Entropy needs the distribution the tokens were sampled from: with temperature ≠ 1 or top-p/top-k, start vLLM
with ``--logprobs-mode processed_logprobs`` (its default returns the raw model distribution).

Errors: ``max_retries=0`` on the openai client; arpo retries 429 and 503 only, with exponential backoff (and the
server's ``Retry-After``); a connection failure or 5xx after that raises ``ServerUnavailableError`` (the engine
moves the group to another server); any other error raises ``InferenceError`` naming the server and the cause.
Every call has a timeout; cancelling the calling task aborts the HTTP request (vLLM then aborts the sequence).
"""

from __future__ import annotations

import os
import random
from collections.abc import Sequence
from typing import Any

import anyio
import openai

from arpo_core.runtime.inference import Completion, InferenceError, SamplingParams

__all__ = ["OpenAITokenClient", "ServerUnavailableError"]

VLLM_NEG_INF = -9999.0
RETRY_STATUS = (429, 503)


class ServerUnavailableError(InferenceError):
    """The server did not answer (connection refused, 5xx, timeout): try the group on another server."""


class OpenAITokenClient:
    """``InferenceClient`` over an OpenAI-compatible ``/v1/completions`` with vLLM's token-id extensions."""

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        timeout: float = 600.0,
        max_attempts: int = 6,
        backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
        http_client: Any = None,
    ) -> None:
        if max_attempts < 1:
            raise ValueError(f"max_attempts={max_attempts} must be ≥ 1.")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self._client = openai.AsyncOpenAI(
            base_url=self.base_url,
            api_key=api_key or os.environ.get("OPENAI_API_KEY") or "EMPTY",
            max_retries=0,
            timeout=timeout,
            http_client=http_client,
        )

    @property
    def name(self) -> str:
        return self.base_url

    async def aclose(self) -> None:
        await self._client.close()

    def request_body(self, prompt_token_ids: Sequence[int], params: SamplingParams) -> dict[str, Any]:
        """The keyword arguments of ``completions.create`` for one request (visible for tests and logs)."""
        extra: dict[str, Any] = {
            "return_token_ids": True,
            "include_stop_str_in_output": True,
            "skip_special_tokens": False,
        }
        if params.top_k != -1:
            extra["top_k"] = params.top_k
        body: dict[str, Any] = {
            "model": self.model,
            "prompt": list(prompt_token_ids),
            "max_tokens": params.max_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "n": 1,
            "extra_body": extra,
        }
        if params.stop:
            body["stop"] = list(params.stop)
        if params.logprobs is not None:
            body["logprobs"] = params.logprobs
        if params.seed is not None:
            body["seed"] = params.seed
        return body

    async def complete(self, prompt_token_ids: Sequence[int], params: SamplingParams) -> Completion:
        body = self.request_body(prompt_token_ids, params)
        for attempt in range(1, self.max_attempts + 1):
            try:
                with anyio.fail_after(self.timeout + 5.0):  # the client's own timeout should fire first
                    response = await self._client.completions.create(**body)
                return self._parse(response, params)
            except openai.APIStatusError as err:
                if err.status_code in RETRY_STATUS and attempt < self.max_attempts:
                    await anyio.sleep(self._delay(attempt, err))
                    continue
                message = _error_message(err)
                if err.status_code >= 500 or err.status_code in RETRY_STATUS:
                    raise ServerUnavailableError(
                        f"{self.base_url} answered {err.status_code} ({message}) after {attempt} attempt(s)."
                    ) from None
                raise InferenceError(f"{self.base_url} refused the request with {err.status_code}: {message}") from None
            except (openai.APIConnectionError, TimeoutError) as err:
                kind = "timed out" if isinstance(err, (openai.APITimeoutError, TimeoutError)) else "cannot be reached"
                raise ServerUnavailableError(
                    f"{self.base_url} {kind} ({type(err).__name__}); check that the server is up."
                ) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _delay(self, attempt: int, err: openai.APIStatusError) -> float:
        retry_after = err.response.headers.get("retry-after") if err.response is not None else None
        if retry_after:
            try:
                return min(float(retry_after), self.max_backoff_s)
            except ValueError:
                pass
        base = min(self.backoff_s * 2 ** (attempt - 1), self.max_backoff_s)
        return float(base * (0.5 + random.random() / 2))  # jitter

    def _parse(self, response: Any, params: SamplingParams) -> Completion:
        if not response.choices:
            raise InferenceError(f"{self.base_url} returned no choices.")
        choice = response.choices[0]
        token_ids = getattr(choice, "token_ids", None)
        if token_ids is None:
            raise InferenceError(
                f"{self.base_url} returned no token_ids; arpo trains on the sampled ids and needs vLLM's "
                "return_token_ids (vLLM ≥ 0.10.2, or arpo's CPU server)."
            )
        ids = tuple(int(t) for t in token_ids)
        logprobs: tuple[float, ...] | None = None
        top: tuple[tuple[float, ...], ...] | None = None
        lp = choice.logprobs
        if params.logprobs is not None and lp is not None and lp.token_logprobs is not None:
            logprobs = tuple(VLLM_NEG_INF if v is None else float(v) for v in lp.token_logprobs)
            if lp.top_logprobs is not None:
                top = tuple(tuple(float(v) for v in (row or {}).values()) for row in lp.top_logprobs)
            if len(logprobs) != len(ids) or (top is not None and len(top) != len(ids)):
                raise InferenceError(
                    f"{self.base_url} returned {len(ids)} token ids but logprobs for {len(logprobs)} positions; "
                    "the ids and logprobs must align (is include_stop_str_in_output honoured?)."
                )
        version = getattr(response, "weight_version", None)
        return Completion(
            ids,
            choice.text,
            logprobs,
            top,
            choice.finish_reason or "stop",
            getattr(choice, "stop_reason", None),
            int(version) if isinstance(version, (int, str)) and str(version).isdigit() else None,
        )


def _error_message(err: openai.APIStatusError) -> str:
    body = err.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])
        if body.get("message"):
            return str(body["message"])
    return str(err.message)
