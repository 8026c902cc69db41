"""Finished sequences → vLLM's response bodies (``CompletionResponse``, ``ChatCompletionResponse``).

Mirrors vLLM's ``_create_completion_logprobs`` and ``_create_chat_logprobs``:

* completions: ``logprobs = {tokens, token_logprobs, top_logprobs, text_offset}``, one entry per token id (stop
  string and EOS tokens included); ``tokens[i]`` is the id decoded alone; ``top_logprobs[i]`` is a dict
  ``{decoded token: logprob}`` holding the sampled token first and then the top ``k`` — so k or k + 1 entries, fewer
  when two ids decode to the same string (a dict keeps one); ``text_offset`` accumulates the decoded lengths.
* chat: ``logprobs.content[i] = {token, logprob, bytes, top_logprobs: [{token, logprob, bytes}, ...]}`` with the
  ``top_logprobs`` most likely tokens in decreasing order (vLLM lists the first k entries of the dict above;
  this server lists the true top k, which is what OpenAI documents).
* ``-inf`` (a token masked by top-k/top-p) is reported as -9999.0; logprobs are the processed distribution's
  (see ``sampling``). ``return_tokens_as_token_ids`` turns every token string into ``"token_id:<id>"``.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

from arpo_backends.serve.engine import Sequence

__all__ = ["NEG_INF", "TokenText", "chat_response", "completion_response"]

NEG_INF = -9999.0


def _clamp(value: float) -> float:
    return max(value, NEG_INF)


class TokenText:
    """Decodes single token ids (cached), or writes them as ``token_id:<id>``."""

    def __init__(self, decode: Callable[[list[int]], str]) -> None:
        self._decode = decode
        self._cache: dict[int, str] = {}

    def __call__(self, token_id: int, as_id: bool = False) -> str:
        if as_id:
            return f"token_id:{token_id}"
        text = self._cache.get(token_id)
        if text is None:
            text = self._cache[token_id] = self._decode([token_id])
        return text


def _completion_logprobs(seq: Sequence, text: TokenText, as_id: bool) -> dict[str, Any]:
    tokens: list[str] = []
    top_logprobs: list[dict[str, float]] = []
    text_offset: list[int] = []
    offset = 0
    for token_id, logprob, top in zip(seq.output_ids, seq.logprobs, seq.top, strict=True):
        token = text(token_id, as_id)
        entries = {token: _clamp(logprob)}
        for other_id, other_logprob in top:
            entries[text(other_id, as_id)] = _clamp(other_logprob)  # a repeated string keeps the last value, as vLLM
        tokens.append(token)
        top_logprobs.append(entries)
        text_offset.append(offset)
        offset += len(token)
    return {
        "text_offset": text_offset,
        "token_logprobs": [_clamp(v) for v in seq.logprobs],
        "tokens": tokens,
        "top_logprobs": top_logprobs,
    }


def _chat_logprobs(seq: Sequence, text: TokenText, as_id: bool) -> dict[str, Any]:
    def entry(token_id: int, logprob: float) -> dict[str, Any]:
        token = text(token_id, as_id)
        return {"token": token, "logprob": _clamp(logprob), "bytes": list(token.encode("utf-8", errors="replace"))}

    content = []
    for token_id, logprob, top in zip(seq.output_ids, seq.logprobs, seq.top, strict=True):
        item = entry(token_id, logprob)
        item["top_logprobs"] = [entry(i, v) for i, v in top]
        content.append(item)
    return {"content": content}


def _usage(prompt_tokens: int, seqs: list[Sequence]) -> dict[str, Any]:
    completion = sum(len(s.output_ids) for s in seqs)
    return {
        "prompt_tokens": prompt_tokens,
        "total_tokens": prompt_tokens + completion,
        "completion_tokens": completion,
        "prompt_tokens_details": None,
    }


def completion_response(
    model: str, seqs: list[Sequence], prompt_tokens: int, *, text: TokenText, return_token_ids: bool, as_id: bool
) -> dict[str, Any]:
    """The body of ``POST /v1/completions`` (choices in prompt order, then choice order, as vLLM)."""
    choices = []
    for index, seq in enumerate(seqs):
        choices.append(
            {
                "index": index,
                "text": seq.text,
                "logprobs": None if seq.params.logprobs is None else _completion_logprobs(seq, text, as_id),
                "finish_reason": seq.finish_reason,
                "stop_reason": seq.stop_reason,
                "token_ids": list(seq.output_ids) if return_token_ids else None,
                "prompt_logprobs": None,
                "prompt_token_ids": list(seq.prompt_ids) if return_token_ids else None,
            }
        )
    return {
        "id": f"cmpl-{uuid.uuid4().hex}",
        "object": "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": choices,
        "service_tier": None,
        "system_fingerprint": None,
        "usage": _usage(prompt_tokens, seqs),
        "weight_version": min((s.weight_version for s in seqs), default=0),
    }


def chat_response(
    model: str, seqs: list[Sequence], prompt_ids: list[int], *, text: TokenText, return_token_ids: bool, as_id: bool
) -> dict[str, Any]:
    """The body of ``POST /v1/chat/completions``."""
    choices = []
    for index, seq in enumerate(seqs):
        choices.append(
            {
                "index": index,
                "message": {"role": "assistant", "content": seq.text, "refusal": None, "reasoning": None},
                "logprobs": None if seq.params.logprobs is None else _chat_logprobs(seq, text, as_id),
                "finish_reason": seq.finish_reason,
                "stop_reason": seq.stop_reason,
                "token_ids": list(seq.output_ids) if return_token_ids else None,
            }
        )
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": choices,
        "service_tier": None,
        "system_fingerprint": None,
        "usage": _usage(len(prompt_ids), seqs),
        "prompt_logprobs": None,
        "prompt_token_ids": list(prompt_ids) if return_token_ids else None,
        "weight_version": min((s.weight_version for s in seqs), default=0),
    }
