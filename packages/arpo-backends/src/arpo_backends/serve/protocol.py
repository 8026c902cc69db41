"""Request and response bodies, field for field as vLLM 0.33's OpenAI-compatible server.

Mirrors ``vllm/entrypoints/openai/{completion,chat_completion,engine}/protocol.py`` and ``serve/tokenize``:
the same names, types and defaults (``max_tokens`` 16 for completions, ``skip_special_tokens`` true,
``include_stop_str_in_output`` false, ``add_special_tokens`` true for completions and false for chat), the same
vLLM extensions (``top_k``, ``min_tokens``, ``ignore_eos``, ``stop_token_ids``, ``return_token_ids`` →
``choices[i].token_ids`` / ``prompt_token_ids``, ``stop_reason``, ``return_tokens_as_token_ids``), and unknown
fields accepted and ignored, as vLLM does.

Deviations: fields of vLLM that this server does not implement are declared so that a request setting them to
anything but their default is refused with a 400 naming the field (silently ignoring a penalty or a grammar would
return samples from another distribution than the one asked for). Responses carry one extra top-level field,
``weight_version`` (the version of the weights that produced them; see ``POST /v1/load_weights``).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "UNSUPPORTED_DEFAULTS",
    "ChatCompletionRequest",
    "CompletionRequest",
    "DetokenizeRequest",
    "ErrorInfo",
    "ErrorResponse",
    "LoadWeightsRequest",
    "TokenizeChatRequest",
    "TokenizeCompletionRequest",
    "UsageInfo",
]

TokenId = Annotated[int, Field(ge=0)]


class OpenAIBaseModel(BaseModel):
    """vLLM's base: unknown fields are accepted (and ignored)."""

    model_config = ConfigDict(extra="allow")


class _Unsupported(OpenAIBaseModel):
    """vLLM fields this server does not implement; refused unless left at vLLM's default (see UNSUPPORTED_DEFAULTS)."""

    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    repetition_penalty: float | None = None
    logit_bias: dict[str, float] | None = None
    min_p: float | None = None
    use_beam_search: bool = False
    stream: bool | None = False
    stream_options: dict[str, Any] | None = None
    prompt_logprobs: int | None = None
    logprob_token_ids: list[int] | None = None
    allowed_token_ids: list[int] | None = None
    bad_words: list[str] | None = None
    response_format: dict[str, Any] | None = None
    structured_outputs: dict[str, Any] | None = None
    truncate_prompt_tokens: int | None = None
    prompt_embeds: Any = None


# field -> values that mean "not used" (vLLM's defaults and their neutral equivalents)
UNSUPPORTED_DEFAULTS: dict[str, tuple[Any, ...]] = {
    "frequency_penalty": (None, 0, 0.0),
    "presence_penalty": (None, 0, 0.0),
    "repetition_penalty": (None, 1, 1.0),
    "logit_bias": (None, {}),
    "min_p": (None, 0, 0.0),
    "use_beam_search": (False,),
    "stream": (None, False),
    "stream_options": (None,),
    "prompt_logprobs": (None,),
    "logprob_token_ids": (None,),
    "allowed_token_ids": (None,),
    "bad_words": (None, []),
    "structured_outputs": (None,),
    "truncate_prompt_tokens": (None,),
    "prompt_embeds": (None,),
    "echo": (None, False),
    "suffix": (None, ""),
    "best_of": (None, 1),
}


class _SamplingFields(_Unsupported):
    """The sampling fields completions and chat share (vLLM's ``*-sampling-params`` blocks)."""

    model: str | None = None
    n: int = 1
    seed: int | None = None
    stop: str | list[str] | None = Field(default_factory=list)
    temperature: float | None = None
    top_p: float | None = None
    user: str | None = None
    top_k: int | None = None
    stop_token_ids: list[int] | None = Field(default_factory=list)
    include_stop_str_in_output: bool = False
    ignore_eos: bool = False
    min_tokens: int = 0
    skip_special_tokens: bool = True
    spaces_between_special_tokens: bool = True
    return_token_ids: bool | None = None
    return_tokens_as_token_ids: bool | None = None
    request_id: str | None = None


class CompletionRequest(_SamplingFields):
    """``POST /v1/completions``: a prompt given as text, token ids, or a batch of either."""

    prompt: list[TokenId] | list[list[TokenId]] | str | list[str] | None = None
    echo: bool | None = False
    suffix: str | None = None
    best_of: int | None = None
    logprobs: int | None = None
    max_tokens: int | None = 16
    add_special_tokens: bool = True


class ChatCompletionRequest(_SamplingFields):
    """``POST /v1/chat/completions``: messages rendered with the model's chat template."""

    messages: list[dict[str, Any]]
    logprobs: bool | None = False
    top_logprobs: int | None = 0
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = "none"
    parallel_tool_calls: bool | None = True
    echo: bool = False
    add_generation_prompt: bool = True
    continue_final_message: bool = False
    add_special_tokens: bool = False
    documents: list[dict[str, str]] | None = None
    chat_template: str | None = None
    chat_template_kwargs: dict[str, Any] | None = None


class TokenizeCompletionRequest(OpenAIBaseModel):
    """``POST /tokenize`` with a text prompt."""

    model: str | None = None
    prompt: str
    add_special_tokens: bool = True
    return_token_strs: bool | None = False


class TokenizeChatRequest(OpenAIBaseModel):
    """``POST /tokenize`` with chat messages (rendered with the chat template first)."""

    model: str | None = None
    messages: list[dict[str, Any]]
    add_generation_prompt: bool = True
    continue_final_message: bool = False
    add_special_tokens: bool = False
    chat_template: str | None = None
    chat_template_kwargs: dict[str, Any] | None = None
    tools: list[dict[str, Any]] | None = None
    return_token_strs: bool | None = False


class DetokenizeRequest(OpenAIBaseModel):
    """``POST /detokenize``."""

    model: str | None = None
    tokens: list[TokenId]


class LoadWeightsRequest(BaseModel):
    """``POST /v1/load_weights`` (arpo's; see the app's docstring for why not vLLM's ``/update_weights``)."""

    model_config = ConfigDict(extra="forbid")

    path: str
    """A folder with ``*.safetensors`` files holding every parameter of the served model (names as in its
    ``state_dict``, e.g. written by ``save_pretrained``); a tied ``lm_head.weight`` may be absent."""
    weight_version: int | None = None
    """The version to report from now on (e.g. the trainer's policy version); default: the current one + 1."""


class UsageInfo(OpenAIBaseModel):
    prompt_tokens: int = 0
    total_tokens: int = 0
    completion_tokens: int | None = 0
    prompt_tokens_details: dict[str, Any] | None = None


class ErrorInfo(OpenAIBaseModel):
    message: str
    type: str
    param: str | None = None
    code: int


class ErrorResponse(OpenAIBaseModel):
    error: ErrorInfo
