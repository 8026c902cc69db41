"""From a request body to token-id prompts and per-choice ``GenParams``, refusing what vLLM would refuse.

Mirrors vLLM's request checks and their 400 messages: ``n`` ≥ 1, ``max_tokens`` ≥ 1, ``temperature`` ≥ 0,
``top_p`` in (0, 1], ``top_k`` ≥ 1 or -1/0 (off), ``logprobs`` ≤ 20, every token id inside the vocabulary, and the
prompt plus ``max_tokens`` within the model's context (``max_model_len``). When ``max_tokens`` is absent from a chat
request it is the room left in the context, as in vLLM. Deviations: ``echo`` is refused; the fields listed in
``protocol.UNSUPPORTED_DEFAULTS`` are refused unless left at their defaults; ``logprobs: -1`` (the whole
vocabulary) is refused.
"""

from __future__ import annotations

from typing import Any

from arpo_backends.serve.engine import GenParams
from arpo_backends.serve.errors import bad_request
from arpo_backends.serve.protocol import UNSUPPORTED_DEFAULTS, ChatCompletionRequest, CompletionRequest

__all__ = ["MAX_LOGPROBS", "check_token_ids", "gen_params", "max_tokens_for", "refuse_unsupported"]

MAX_LOGPROBS = 20  # vLLM's default --max-logprobs


def refuse_unsupported(req: Any) -> None:
    """400 when the request sets a vLLM field this server does not implement."""
    for name, neutral in UNSUPPORTED_DEFAULTS.items():
        if name in type(req).model_fields and getattr(req, name) not in neutral:
            raise bad_request(
                f"{name}={getattr(req, name)!r} is not supported by the arpo CPU server (it serves the fields arpo "
                "needs: sampling with temperature/top_p/top_k/seed, stop, logprobs, token ids); leave it unset.",
                name,
            )


def check_token_ids(ids: list[int], vocab_size: int, where: str) -> None:
    """400 naming the first id outside ``[0, vocab_size)``."""
    for token in ids:
        if not 0 <= token < vocab_size:
            raise bad_request(
                f"Token id {token} in {where} is out of vocabulary (the model has {vocab_size} tokens: 0 to "
                f"{vocab_size - 1}).",
                where.split()[-1],
            )


def max_tokens_for(requested: int | None, prompt_len: int, max_model_len: int) -> int:
    """``max_tokens`` after vLLM's context-length check; ``None`` means the room left in the context."""
    if prompt_len >= max_model_len:
        raise bad_request(
            f"This model's maximum context length is {max_model_len} tokens. However, your request has "
            f"{prompt_len} input tokens. Please reduce the length of the input messages.",
            "prompt",
        )
    if requested is None:
        return max_model_len - prompt_len
    if requested < 1:
        raise bad_request(f"max_tokens must be at least 1, got {requested}.", "max_tokens")
    if prompt_len + requested > max_model_len:
        raise bad_request(
            f"This model's maximum context length is {max_model_len} tokens. However, you requested "
            f"{prompt_len + requested} tokens ({prompt_len} in the messages, {requested} in the completion). "
            "Please reduce the length of the messages or completion.",
            "max_tokens",
        )
    return requested


def gen_params(
    req: CompletionRequest | ChatCompletionRequest, *, max_tokens: int, logprobs: int | None, vocab_size: int
) -> GenParams:
    """The per-choice sampling parameters of a validated request."""
    if req.n < 1:
        raise bad_request(f"n must be at least 1, got {req.n}.", "n")
    temperature = 1.0 if req.temperature is None else float(req.temperature)
    if temperature < 0:
        raise bad_request(f"temperature must be non-negative, got {temperature}.", "temperature")
    top_p = 1.0 if req.top_p is None else float(req.top_p)
    if not 0 < top_p <= 1:
        raise bad_request(f"top_p must be in (0, 1], got {top_p}.", "top_p")
    top_k = 0 if req.top_k is None else int(req.top_k)
    if top_k < -1:
        raise bad_request(f"top_k must be 0 or -1 (disable), or at least 1, got {top_k}.", "top_k")
    if logprobs is not None and not 0 <= logprobs <= MAX_LOGPROBS:
        raise bad_request(
            f"Requested sample logprobs of {logprobs}, which is outside the allowed range 0 to {MAX_LOGPROBS}.",
            "logprobs",
        )
    if req.min_tokens < 0 or req.min_tokens > max_tokens:
        raise bad_request(
            f"min_tokens must be between 0 and max_tokens={max_tokens}, got {req.min_tokens}.", "min_tokens"
        )
    stop = [req.stop] if isinstance(req.stop, str) else list(req.stop or [])
    if any(s == "" for s in stop):
        raise bad_request("stop strings must not be empty.", "stop")
    stop_token_ids = list(req.stop_token_ids or [])
    check_token_ids(stop_token_ids, vocab_size, "stop_token_ids")
    return GenParams(
        max_tokens=max_tokens,
        temperature=temperature,
        top_p=top_p,
        top_k=max(top_k, 0),
        seed=req.seed,
        stop=tuple(stop),
        stop_token_ids=tuple(stop_token_ids),
        include_stop_str_in_output=req.include_stop_str_in_output,
        ignore_eos=req.ignore_eos,
        min_tokens=req.min_tokens,
        logprobs=logprobs,
        skip_special_tokens=req.skip_special_tokens,
    )
