r"""Demonstrations → ``TrajectorySample`` rows: the rendered conversation (``sft.render``) as token ids, with the
loss mask on exactly the tokens of the characters the model writes.

The rendered text is cut where the mask changes (turn and ``<result>`` boundaries) and each piece is tokenised on its
own (``add_special_tokens=False``: the template writes its own special tokens, as vLLM renders chat prompts), as
verl's multi-turn SFT does. That is the token stream the model meets in ARPO's rollouts and at inference, where the
prompt is tokenised, the assistant generates from scratch after the role header and after each tool result, and the
result (`` <result>\n…\n</result>``) is tokenised alone; tokenising the whole text instead would let a token such as
">\n\n" straddle the end of a result and the text the model writes next. Splitting is safe for byte-level BPE
(Qwen, Llama 3, SmolLM2) but not for tokenizers that prepend a space to every call (SentencePiece "▁"): those are
detected (``tokenize(a) + tokenize(b)`` must decode to ``a + b``) and get the whole text tokenised once, with a token
a loss token iff every character it covers is trained; a token across a boundary is then left out and counted in
``SFTStats.boundary_tokens``. ``split_at_boundaries`` forces either way.

Sample fields: ``advantages`` 1.0 on every token (with ratio 1, ARPO's surrogate −r·Â has the gradient of the NLL;
``sft.loss.sft_loss`` is the NLL itself); ``behaviour_logprobs`` NaN (no sampler); ``prompt_length`` the tokens
before the first loss token; ``trajectory`` 0; ``group_id`` ``f"sft-{row index}"``; ``policy_version`` None.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
from numpy.typing import NDArray

from arpo_backends.batching.samples import TrajectorySample
from arpo_backends.sft.data import Demonstration, load_demonstrations
from arpo_backends.sft.render import ChatTemplateError, render_demonstration

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

__all__ = [
    "SFTStats",
    "Truncation",
    "concatenates_cleanly",
    "encode_demonstration",
    "load_chat_tokenizer",
    "load_sft_samples",
    "tokenize_demonstrations",
]

Truncation = Literal["drop", "truncate"]


@dataclass(frozen=True, slots=True)
class SFTStats:
    """What ``tokenize_demonstrations`` kept, dropped and masked."""

    demonstrations: int
    samples: int
    """Samples returned (demonstrations less those dropped)."""
    dropped_too_long: int
    """Longer than ``max_length`` under ``truncation="drop"``."""
    truncated: int
    """Cut to ``max_length`` under ``truncation="truncate"`` (and kept)."""
    dropped_no_loss: int
    """Dropped because no loss token was left (after truncation, or every trained token crossed a boundary)."""
    tokens: int
    loss_tokens: int
    tool_output_tokens: int
    """Tokens (of the samples returned) inside a masked ``<result>`` span."""
    boundary_tokens: int
    """Tokens (of the samples returned) that cross a trained/untrained boundary, left out of the loss (always 0
    when ``split_at_boundaries``)."""
    max_length: int | None
    split_at_boundaries: bool
    """Whether each turn and result piece was tokenised on its own (else the whole text at once)."""

    def summary(self) -> str:
        """One line for a log or the CLI."""
        parts = [f"{self.samples} of {self.demonstrations} demonstrations kept"]
        if self.dropped_too_long:
            parts.append(f"{self.dropped_too_long} longer than max_length={self.max_length} dropped")
        if self.truncated:
            parts.append(f"{self.truncated} truncated to max_length={self.max_length}")
        if self.dropped_no_loss:
            parts.append(f"{self.dropped_no_loss} with no loss token left dropped")
        counts = f"{self.tokens} tokens, {self.loss_tokens} trained, {self.tool_output_tokens} tool output masked"
        return f"{', '.join(parts)}; {counts}."


@dataclass(frozen=True, slots=True)
class _Encoded:
    sample: TrajectorySample
    tool_output: NDArray[np.bool_]  # (L,) token inside a masked result span
    boundary: NDArray[np.bool_]  # (L,) token across a trained/untrained boundary (whole-text tokenisation only)


def _token_ids(tokenizer: PreTrainedTokenizerBase, text: str) -> list[int]:
    ids: list[int] = tokenizer(text, add_special_tokens=False)["input_ids"]
    return ids


def concatenates_cleanly(tokenizer: PreTrainedTokenizerBase) -> bool:
    """Whether tokenising pieces separately and concatenating the ids gives back the concatenated text."""
    pieces = ("a", "b", " c", "\n", "d")
    ids = [i for piece in pieces for i in _token_ids(tokenizer, piece)]
    return bool(tokenizer.decode(ids) == "".join(pieces))


def _encode_pieces(
    text: str, trained: NDArray[np.bool_], tool: NDArray[np.bool_], cuts: list[int], tokenizer: PreTrainedTokenizerBase
) -> tuple[NDArray[np.int64], NDArray[np.bool_], NDArray[np.bool_], NDArray[np.bool_]]:
    ids: list[int] = []
    loss: list[bool] = []
    inside: list[bool] = []
    for start, end in itertools.pairwise(cuts):
        piece = _token_ids(tokenizer, text[start:end])
        ids.extend(piece)
        loss.extend([bool(trained[start])] * len(piece))
        inside.extend([bool(tool[start])] * len(piece))
    return (
        np.asarray(ids, dtype=np.int64),
        np.asarray(loss, dtype=np.bool_),
        np.asarray(inside, dtype=np.bool_),
        np.zeros(len(ids), dtype=np.bool_),
    )


def _encode_whole(
    text: str, trained: NDArray[np.bool_], tool: NDArray[np.bool_], tokenizer: PreTrainedTokenizerBase, where: str
) -> tuple[NDArray[np.int64], NDArray[np.bool_], NDArray[np.bool_], NDArray[np.bool_]]:
    try:
        encoding = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    except NotImplementedError as err:
        raise ChatTemplateError(
            f"{where}: the SFT mask of a tokenizer that cannot be split at turn boundaries needs character offsets, "
            f"which only fast tokenizers give; load the tokenizer of {getattr(tokenizer, 'name_or_path', '?')} with "
            "use_fast=True (a tokenizer.json)."
        ) from err
    offsets = np.asarray(encoding["offset_mapping"], dtype=np.int64).reshape(-1, 2)
    trained_sum = np.concatenate([[0], np.cumsum(trained, dtype=np.int64)])
    tool_sum = np.concatenate([[0], np.cumsum(tool, dtype=np.int64)])
    begin, finish = offsets[:, 0], offsets[:, 1]
    width = finish - begin
    covered = trained_sum[finish] - trained_sum[begin]
    return (
        np.asarray(encoding["input_ids"], dtype=np.int64),
        (width > 0) & (covered == width),
        (tool_sum[finish] - tool_sum[begin]) > 0,
        (covered > 0) & (covered < width),
    )


def _encode(
    demo: Demonstration,
    tokenizer: PreTrainedTokenizerBase,
    *,
    chat_template: str | None,
    mask_results: bool,
    split_at_boundaries: bool,
) -> _Encoded:
    rendered = render_demonstration(demo, tokenizer, chat_template=chat_template, mask_results=mask_results)
    text = rendered.text
    trained = rendered.trained_characters()
    tool = np.zeros(len(text), dtype=np.bool_)
    for start, end in rendered.result_spans:
        tool[start:end] = True
    if split_at_boundaries:
        cuts = sorted({0, len(text)}.union(*rendered.trained_spans, *rendered.result_spans))
        token_ids, loss_mask, tool_tokens, boundary = _encode_pieces(text, trained, tool, cuts, tokenizer)
    else:
        token_ids, loss_mask, tool_tokens, boundary = _encode_whole(text, trained, tool, tokenizer, demo.where)
    length = len(token_ids)
    first = np.flatnonzero(loss_mask)
    sample = TrajectorySample(
        group_id=demo.group_id,
        trajectory=0,
        token_ids=token_ids,
        loss_mask=loss_mask,
        advantages=np.ones(length, dtype=np.float64),
        behaviour_logprobs=np.full(length, np.nan, dtype=np.float64),
        prompt_length=int(first[0]) if len(first) else length,
    )
    return _Encoded(sample, tool_tokens, boundary)


def encode_demonstration(
    demo: Demonstration,
    tokenizer: PreTrainedTokenizerBase,
    *,
    chat_template: str | None = None,
    mask_results: bool = True,
    split_at_boundaries: bool | None = None,
) -> TrajectorySample:
    """One demonstration as one untruncated training row (options as ``tokenize_demonstrations``)."""
    split = concatenates_cleanly(tokenizer) if split_at_boundaries is None else split_at_boundaries
    return _encode(
        demo, tokenizer, chat_template=chat_template, mask_results=mask_results, split_at_boundaries=split
    ).sample


def _truncated(sample: TrajectorySample, length: int) -> TrajectorySample:
    return TrajectorySample(
        group_id=sample.group_id,
        trajectory=sample.trajectory,
        token_ids=sample.token_ids[:length],
        loss_mask=sample.loss_mask[:length],
        advantages=sample.advantages[:length],
        behaviour_logprobs=sample.behaviour_logprobs[:length],
        prompt_length=min(sample.prompt_length, length),
        policy_version=sample.policy_version,
    )


def tokenize_demonstrations(
    demos: Iterable[Demonstration],
    tokenizer: PreTrainedTokenizerBase,
    *,
    max_length: int | None = None,
    truncation: Truncation = "drop",
    chat_template: str | None = None,
    mask_results: bool = True,
    split_at_boundaries: bool | None = None,
) -> tuple[list[TrajectorySample], SFTStats]:
    """Training rows for ``demos`` in order, and what was kept, dropped and masked.

    A row longer than ``max_length`` tokens is dropped (``truncation="drop"``, the default: a cut demonstration
    teaches an answer that stops mid-way) or cut to its first ``max_length`` tokens (``"truncate"``); a row left
    with no loss token is dropped either way. ``chat_template`` replaces the tokenizer's; ``mask_results=False``
    trains on ``<result>`` spans too; ``split_at_boundaries`` (None: when the tokenizer concatenates cleanly)
    tokenises each turn and result piece on its own rather than the whole text at once (module docstring).
    """
    if max_length is not None and max_length < 1:
        raise ValueError(f"max_length={max_length} must be ≥ 1 (or None for no limit).")
    if truncation not in ("drop", "truncate"):
        raise ValueError(f"truncation={truncation!r} is not one of 'drop', 'truncate'.")
    split = concatenates_cleanly(tokenizer) if split_at_boundaries is None else split_at_boundaries
    samples: list[TrajectorySample] = []
    seen = too_long = cut = no_loss = tool_tokens = boundary_tokens = 0
    for demo in demos:
        seen += 1
        encoded = _encode(
            demo, tokenizer, chat_template=chat_template, mask_results=mask_results, split_at_boundaries=split
        )
        sample, tool, boundary = encoded.sample, encoded.tool_output, encoded.boundary
        if max_length is not None and sample.length > max_length:
            if truncation == "drop":
                too_long += 1
                continue
            cut += 1
            sample, tool, boundary = _truncated(sample, max_length), tool[:max_length], boundary[:max_length]
        if sample.num_loss_tokens == 0:
            no_loss += 1
            continue
        samples.append(sample)
        tool_tokens += int(tool.sum())
        boundary_tokens += int(boundary.sum())
    stats = SFTStats(
        demonstrations=seen,
        samples=len(samples),
        dropped_too_long=too_long,
        truncated=cut,
        dropped_no_loss=no_loss,
        tokens=sum(s.length for s in samples),
        loss_tokens=sum(s.num_loss_tokens for s in samples),
        tool_output_tokens=tool_tokens,
        boundary_tokens=boundary_tokens,
        max_length=max_length,
        split_at_boundaries=split,
    )
    return samples, stats


def load_chat_tokenizer(name_or_path: str | Path) -> PreTrainedTokenizerBase:
    """The (fast) tokenizer of a local model folder or one of arpo's built-in names (never downloads)."""
    from transformers import AutoTokenizer

    from arpo_backends.models import resolve_model

    tokenizer: PreTrainedTokenizerBase = AutoTokenizer.from_pretrained(resolve_model(str(name_or_path)))
    return tokenizer


def load_sft_samples(
    path: str | Path,
    tokenizer: PreTrainedTokenizerBase,
    *,
    max_length: int | None = None,
    truncation: Truncation = "drop",
    chat_template: str | None = None,
    mask_results: bool = True,
    split_at_boundaries: bool | None = None,
    limit: int | None = None,
) -> tuple[list[TrajectorySample], SFTStats]:
    """``load_demonstrations`` then ``tokenize_demonstrations``: a demonstrations file as training rows."""
    return tokenize_demonstrations(
        load_demonstrations(path, limit=limit),
        tokenizer,
        max_length=max_length,
        truncation=truncation,
        chat_template=chat_template,
        mask_results=mask_results,
        split_at_boundaries=split_at_boundaries,
    )
