"""The ``InferenceClient`` protocol: token ids in, sampled token ids (with their logprobs) out.

The runtime never trains on re-encoded text: a completion carries the exact ids the server sampled
(vLLM: ``return_token_ids``), their behaviour logprobs, and the top-k logprobs of each position for the entropy
estimators. Implementations: ``OpenAITokenClient`` (vLLM or any server with vLLM's ``/v1/completions``
extensions) and, for tests, ``arpo_core.testing.PolicyInferenceClient``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

__all__ = ["Completion", "InferenceClient", "InferenceError", "SamplingParams", "Tokenizer"]


class InferenceError(RuntimeError):
    """A request the server could not serve (after retries); ``str()`` names the server and the cause."""


@dataclass(frozen=True, slots=True)
class SamplingParams:
    """What to sample. Training: temperature 1, top-p 1 (paper); validation: temperature 0."""

    max_tokens: int
    """Always sent: vLLM's default is 16 tokens."""
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = -1
    stop: tuple[str, ...] = ()
    """Stop strings, e.g. the tools' closing tags; kept in the output (``include_stop_str_in_output``)."""
    logprobs: int | None = 10
    """Top-k logprobs per generated token (vLLM allows ≤ 20); None asks for none (no branching possible)."""
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens={self.max_tokens} must be ≥ 1.")
        if self.logprobs is not None and not 0 <= self.logprobs <= 20:
            raise ValueError(f"logprobs={self.logprobs} must be between 0 and 20 (vLLM's default maximum).")


@dataclass(frozen=True, slots=True)
class Completion:
    """One sampled continuation."""

    token_ids: tuple[int, ...]
    """Exactly the sampled ids, the stop string's tokens included when the server stopped on one."""
    text: str
    logprobs: tuple[float, ...] | None
    """Behaviour logprob of each sampled id."""
    top_logprobs: tuple[tuple[float, ...], ...] | None
    """Top-k logprob values per position (the sampled token's may be among them)."""
    finish_reason: str
    """``stop`` (EOS or a stop string/token), ``length`` (max_tokens), or ``abort``."""
    stop_reason: str | int | None = None
    """The stop string or token id that ended it, when one did."""
    policy_version: int | None = None
    """The weights version the server reported, when it reports one."""


@runtime_checkable
class InferenceClient(Protocol):
    """A server that continues token-id prompts."""

    @property
    def name(self) -> str: ...

    async def complete(self, prompt_token_ids: Sequence[int], params: SamplingParams) -> Completion: ...


@runtime_checkable
class Tokenizer(Protocol):
    """Text ↔ ids for prompts and tool results (the server's ``/tokenize``, or a local tokenizer)."""

    async def encode(self, text: str) -> list[int]: ...

    async def decode(self, token_ids: Sequence[int]) -> str: ...
