r"""A demonstration rendered by the model's own chat template, with the characters the SFT loss covers.

The mask comes from rendering prefixes, as TRL's and verl's multi-turn SFT datasets do (transformers'
``return_assistant_tokens_mask`` needs ``{% generation %}`` blocks that most templates lack). For each trained
assistant turn k of the messages m_0 … m_{n−1}::

    full   = render(m_0 … m_{n−1})
    head_k = render(m_0 … m_{k−1}, add_generation_prompt=True)     ends with the role header, "<|im_start|>assistant\n"
    turn_k = render(m_0 … m_k)
    trained characters of turn k = full[len(head_k) : len(turn_k)]
        less the whitespace after its last special token (the "\n" a template puts between turns: never generated),
        less its <result>…</result> spans (tool output the rollout inserted, arpo-spec §1)

so content, tool calls and the end-of-turn token (``<|im_end|>``) are trained; the role header, system, user and
tool turns are not. **Prefix property**: head_k must be a prefix of turn_k, and turn_k of full. A template that
re-renders earlier turns once later ones are added (Qwen3's drops the <think> of earlier turns, for one) breaks it
and raises ``ChatTemplateError`` naming the template: its mask cannot be computed this way.

Tokenisation (``sft.tokenization``) turns the trained characters into the loss mask of the token ids.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import numpy as np
from numpy.typing import NDArray

from arpo_backends.sft.data import Demonstration, result_spans

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

__all__ = ["ChatTemplateError", "RenderedDemonstration", "render_demonstration"]


class ChatTemplateError(ValueError):
    """The chat template cannot give an SFT mask for a demonstration; ``str()`` names the row, template and fix."""


@dataclass(frozen=True, slots=True)
class RenderedDemonstration:
    """A demonstration as the chat template renders it, with the character spans the loss covers."""

    text: str
    trained_spans: tuple[tuple[int, int], ...]
    """``[start, end)`` of each trained assistant turn in ``text``, result spans not yet removed."""
    result_spans: tuple[tuple[int, int], ...]
    """``[start, end)`` of each masked ``<result>`` block inside the trained spans."""

    def trained_characters(self) -> NDArray[np.bool_]:
        """``(len(text),)`` True on every character the loss covers."""
        trained = np.zeros(len(self.text), dtype=np.bool_)
        for start, end in self.trained_spans:
            trained[start:end] = True
        for start, end in self.result_spans:
            trained[start:end] = False
        return trained


def _template_name(tokenizer: PreTrainedTokenizerBase, chat_template: str | None) -> str:
    if chat_template is not None:
        return "the chat_template passed in"
    return f"the chat template of {getattr(tokenizer, 'name_or_path', '') or type(tokenizer).__name__}"


def _render(
    tokenizer: PreTrainedTokenizerBase,
    demo: Demonstration,
    count: int,
    *,
    generation: bool,
    chat_template: str | None,
) -> str:
    """The first ``count`` messages of ``demo`` as the template renders them."""
    try:
        text = tokenizer.apply_chat_template(
            cast(Any, list(demo.messages[:count])),
            tools=cast(Any, list(demo.tools) if demo.tools else None),
            chat_template=chat_template,
            add_generation_prompt=generation,
            tokenize=False,
        )
    except Exception as err:
        raise ChatTemplateError(
            f"{demo.where}: {_template_name(tokenizer, chat_template)} failed on the first {count} messages "
            f"({type(err).__name__}: {err}); fix the row or pass a chat_template that renders it."
        ) from err
    if not isinstance(text, str):  # pragma: no cover - tokenize=False returns text
        raise TypeError(f"apply_chat_template(tokenize=False) returned {type(text).__name__}, not str.")
    return text


def _first_difference(a: str, b: str) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))


def _prefix_error(demo: Demonstration, name: str, k: int, shorter: str, longer: str, what: str) -> ChatTemplateError:
    at = _first_difference(shorter, longer)
    return ChatTemplateError(
        f"{demo.where}: {name} breaks the prefix property at turn {k} ({what} differ at character {at}: "
        f"{shorter[at : at + 30]!r} vs {longer[at : at + 30]!r}); the SFT mask is computed by rendering each "
        "conversation prefix, so pass a chat_template that renders earlier turns the same whatever follows."
    )


def _special_strings(tokenizer: PreTrainedTokenizerBase) -> tuple[str, ...]:
    """Special and added tokens' text, longest first (an end-of-turn token is one of them)."""
    strings = {str(t) for t in getattr(tokenizer, "all_special_tokens", ())}
    decoder = getattr(tokenizer, "added_tokens_decoder", None) or {}
    strings.update(str(getattr(t, "content", t)) for t in decoder.values())
    return tuple(sorted((s for s in strings if s), key=len, reverse=True))


def _end_of_turn(text: str, start: int, end: int, specials: Sequence[str]) -> int:
    """``end`` less the whitespace after a final special token (template layout between turns)."""
    stripped = text[start:end].rstrip()
    if any(stripped.endswith(s) for s in specials):
        return start + len(stripped)
    return end


def render_demonstration(
    demo: Demonstration,
    tokenizer: PreTrainedTokenizerBase,
    *,
    chat_template: str | None = None,
    mask_results: bool = True,
) -> RenderedDemonstration:
    """The rendered conversation and its trained character spans (see the module docstring)."""
    name = _template_name(tokenizer, chat_template)
    if chat_template is None and not getattr(tokenizer, "chat_template", None):
        raise ChatTemplateError(
            f"{name} is missing (the tokenizer has none); SFT renders conversations with it, so pass chat_template=."
        )
    full = _render(tokenizer, demo, len(demo.messages), generation=False, chat_template=chat_template)
    specials = _special_strings(tokenizer)
    trained: list[tuple[int, int]] = []
    results: list[tuple[int, int]] = []
    for k, is_trained in enumerate(demo.trained):
        if not is_trained:
            continue
        head = _render(tokenizer, demo, k, generation=True, chat_template=chat_template)
        turn = _render(tokenizer, demo, k + 1, generation=False, chat_template=chat_template)
        if not full.startswith(turn):
            raise _prefix_error(demo, name, k, turn, full, f"the text up to turn {k} and the whole conversation")
        if not turn.startswith(head):
            raise _prefix_error(
                demo, name, k, head, turn, f"the generation prompt before turn {k} and the text with turn {k}"
            )
        start, end = len(head), _end_of_turn(full, len(head), len(turn), specials)
        span = full[start:end]
        for call in demo.messages[k].get("tool_calls", ()):
            if call["function"]["name"] not in span:
                raise ChatTemplateError(
                    f"{demo.where}: {name} does not render the tool_calls of turn {k} (no "
                    f"{call['function']['name']!r} in the rendered turn), so the model would learn a turn without "
                    "its calls; pass a chat_template that renders tool_calls, or write the calls in the content."
                )
        trained.append((start, end))
        if mask_results:
            results.extend((start + a, start + b) for a, b in result_spans(span))
    for tool in demo.tools or ():
        function = tool.get("function", tool)
        tool_name = function.get("name") if isinstance(function, dict) else None
        if isinstance(tool_name, str) and tool_name not in full:
            raise ChatTemplateError(
                f"{demo.where}: {name} does not render 'tools' (no {tool_name!r} in the text), so the model would "
                "learn calls to tools it is never shown; pass a chat_template that renders tools, or describe them "
                "in the system turn and drop 'tools'."
            )
    return RenderedDemonstration(full, tuple(trained), tuple(results))
