"""The SFT cold start (the paper's stage before RL): demonstrations, their loss masks, and the NLL loss.

``load_demonstrations`` reads TRL conversational, TRL prompt-completion and ShareGPT rows (JSONL, JSON, parquet),
ARPO raw text with inline ``<result>`` tool output included; ``tokenize_demonstrations`` renders each with the
model's own chat template into ``TrajectorySample`` rows whose loss mask covers exactly the assistant's tokens
(content, tool calls, end-of-turn token; not role headers, other turns or ``<result>`` spans); ``sft_loss`` is the
token-mean NLL, exact under any split into micro-batches and ranks. The rows go through the same batching
(``batching.make_micro_batches``) and trainers as RL.
"""

from __future__ import annotations

from arpo_backends.sft.data import (
    ROLES,
    Demonstration,
    DemonstrationError,
    DemonstrationFormat,
    demonstrations_from_rows,
    load_demonstrations,
    parse_demonstration,
    result_spans,
)
from arpo_backends.sft.loss import sft_loss, sft_micro_batch_loss
from arpo_backends.sft.render import ChatTemplateError, RenderedDemonstration, render_demonstration
from arpo_backends.sft.tokenization import (
    SFTStats,
    Truncation,
    concatenates_cleanly,
    encode_demonstration,
    load_chat_tokenizer,
    load_sft_samples,
    tokenize_demonstrations,
)

__all__ = [
    "ROLES",
    "ChatTemplateError",
    "Demonstration",
    "DemonstrationError",
    "DemonstrationFormat",
    "RenderedDemonstration",
    "SFTStats",
    "Truncation",
    "concatenates_cleanly",
    "demonstrations_from_rows",
    "encode_demonstration",
    "load_chat_tokenizer",
    "load_demonstrations",
    "load_sft_samples",
    "parse_demonstration",
    "render_demonstration",
    "result_spans",
    "sft_loss",
    "sft_micro_batch_loss",
    "tokenize_demonstrations",
]
