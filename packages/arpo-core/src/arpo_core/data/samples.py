"""``Sample``: one prompt with its gold answers, whatever file it came from."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["TAG_PROTOCOL_SYSTEM_PROMPT", "Sample"]

TAG_PROTOCOL_SYSTEM_PROMPT = (
    "You are a helpful assistant that answers questions step by step and may use two tools: a search engine and a "
    "Python interpreter. Think inside <think> </think>. To search, write <search> query </search>; to run code, "
    "write <python> code </python> and print what you need. Each tool's output comes back inside <result> "
    "</result>. Give the final answer inside <answer> </answer>, with the exact answer in \\boxed{}, for example "
    "<answer> The answer is \\boxed{42}. </answer>"
)
"""arpo's wording of the ARPO tag protocol (the paper's tags; used when a dataset brings no system prompt)."""


@dataclass(frozen=True)
class Sample:
    id: str
    messages: tuple[Mapping[str, str], ...]
    """Chat messages: an optional system message, then the user's question."""
    ground_truth: tuple[str, ...]
    """Every accepted answer."""
    ability: str = "qa"
    """``math`` or ``qa`` (the reference's split)."""
    data_source: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def question(self) -> str:
        return next((m["content"] for m in reversed(self.messages) if m.get("role") == "user"), "")
