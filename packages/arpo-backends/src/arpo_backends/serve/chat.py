"""Chat messages → prompt token ids through the model's own chat template, as vLLM renders them.

Mirrors vLLM's handling for Hugging Face templates: text content parts are joined with newlines (the "string"
content format); tool-call ``arguments`` given as JSON strings are parsed into objects, since templates such as
Qwen's expect a mapping; ``tools``, ``documents``, ``chat_template`` and ``chat_template_kwargs`` go to
``apply_chat_template``; the rendered text is then encoded with ``add_special_tokens`` (false by default, the
template adds them). Non-text content (images, audio) is refused.
"""

from __future__ import annotations

import contextlib
import copy
import json
from typing import Any

from arpo_backends.serve.errors import bad_request

__all__ = ["render_chat"]


def _text_content(content: Any, index: int) -> Any:
    if content is None or isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if isinstance(part, str):
                texts.append(part)
            elif isinstance(part, dict) and part.get("type") in ("text", "input_text"):
                texts.append(str(part.get("text", "")))
            else:
                kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                raise bad_request(
                    f"messages[{index}] has a {kind!r} content part; the arpo CPU server takes text only.",
                    "messages",
                )
        return "\n".join(texts)
    raise bad_request(f"messages[{index}].content must be a string or a list of text parts.", "messages")


def _normalise(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for index, message in enumerate(messages):
        if "role" not in message:
            raise bad_request(f"messages[{index}] has no 'role'.", "messages")
        item = copy.deepcopy(message)
        item["content"] = _text_content(item.get("content"), index)
        for call in item.get("tool_calls") or []:
            function = call.get("function") if isinstance(call, dict) else None
            if isinstance(function, dict) and isinstance(function.get("arguments"), str):
                with contextlib.suppress(ValueError):  # malformed arguments stay text, as the model wrote them
                    function["arguments"] = json.loads(function["arguments"])
        out.append(item)
    return out


def render_chat(tokenizer: Any, req: Any) -> list[int]:
    """The prompt ids of a chat request (``ChatCompletionRequest`` or ``TokenizeChatRequest``)."""
    if not req.messages:
        raise bad_request("messages must not be empty.", "messages")
    if req.add_generation_prompt and req.continue_final_message:
        raise bad_request("Cannot set both `continue_final_message` and `add_generation_prompt` to True.", "messages")
    template = req.chat_template or getattr(tokenizer, "chat_template", None)
    if not template:
        raise bad_request(
            "The served model's tokenizer has no chat template; pass `chat_template` or use /v1/completions."
        )
    kwargs: dict[str, Any] = dict(req.chat_template_kwargs or {})
    documents = getattr(req, "documents", None)
    if documents is not None:
        kwargs["documents"] = documents
    try:
        text = tokenizer.apply_chat_template(
            _normalise(req.messages),
            tools=req.tools,
            chat_template=req.chat_template,
            add_generation_prompt=req.add_generation_prompt,
            continue_final_message=req.continue_final_message,
            tokenize=False,
            **kwargs,
        )
    except Exception as err:  # jinja errors: the template refused these messages
        raise bad_request(f"The chat template could not render these messages: {err}", "messages") from None
    return list(tokenizer.encode(text, add_special_tokens=req.add_special_tokens))
