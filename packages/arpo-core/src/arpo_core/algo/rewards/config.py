"""``RewardConfig``: the settings of ARPO's rule-based reward, with the paper's and the reference's defaults.

The reward (spec §5; see :mod:`arpo_core.algo.rewards.compose`)::

    R = format_penalty                               if the format check fails
    R = s + tool_bonus · [s > 0 and bonus_tools ⊆ used tools]    otherwise,

with ``s`` the ``answer_metric`` of the last boxed answer against the gold answers. This module imports only
pydantic and the
(standard-library only) format check, so the run config can embed it cheaply.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from arpo_core.algo.rewards.format_check import RESERVED_TAGS, TOOL_TAG_NAME

__all__ = ["AnswerMetric", "RewardConfig"]

AnswerMetric = Literal["f1", "em", "math"]


class RewardConfig(BaseModel):
    """Rule-based reward of a tag-protocol response (format penalty, answer score, multi-tool bonus)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    answer_metric: AnswerMetric = Field(
        default="f1",
        description=(
            "How the boxed answer is scored against the gold answers: 'f1' (token-level F1 with SQuAD "
            "normalisation; the paper's and the reference's training reward), 'em' (exact match) or 'math' "
            "(symbolic equivalence with math-verify). Default: 'f1'."
        ),
    )
    format_penalty: float = Field(
        default=-1.0,
        description="Reward of a response that fails the format check. Paper and reference: -1.0.",
    )
    tool_bonus: float = Field(
        default=0.1,
        description=(
            "Added to a positive answer score when every tool in bonus_tools was called (and answered). "
            "Paper and reference: 0.1. Set 0 to turn the bonus off."
        ),
    )
    bonus_tools: tuple[str, ...] = Field(
        default=("search", "python"),
        description=(
            "Tools that must all have been used for the bonus; each must be one of tool_tags. "
            "Paper and reference: ('search', 'python')."
        ),
    )
    tool_tags: tuple[str, ...] = Field(
        default=("search", "python"),
        description=(
            "Tag names of tool calls (<name>…</name>, each followed by <result>…</result>) that the format "
            "check knows. Reference: ('search', 'python')."
        ),
    )
    require_think: bool = Field(
        default=True,
        description=(
            "Whether the format check requires at least one <think>…</think> block (balanced tags are always "
            "required). Reference: True."
        ),
    )
    math_max_chars: int = Field(
        default=400,
        ge=1,
        description=(
            "Longest answer, in characters, that the 'math' metric hands to math-verify; longer answers are "
            "compared as strings only. Not in the reference; the longest gold in its data has 215 characters."
        ),
    )
    math_timeout_seconds: int | None = Field(
        default=2,
        ge=1,
        description=(
            "math-verify's signal timeout per parse and per comparison for the 'math' metric; applies only in "
            "the main thread (signals do not work elsewhere); None disables it. Reference (Tool-Star): 2."
        ),
    )

    @field_validator("tool_tags", "bonus_tools")
    @classmethod
    def _tag_names(cls, tags: tuple[str, ...]) -> tuple[str, ...]:
        for tag in tags:
            if not TOOL_TAG_NAME.fullmatch(tag) or tag in RESERVED_TAGS:
                raise ValueError(
                    f"{tag!r} cannot name a tool: use a letter then letters, digits, '_', '.' or '-', and not "
                    f"one of {sorted(RESERVED_TAGS)}."
                )
        if len(set(tags)) != len(tags):
            raise ValueError(f"{list(tags)} names a tool twice; list each tool once.")
        return tags

    @model_validator(mode="after")
    def _bonus_tools_are_tool_tags(self) -> RewardConfig:
        unknown = [tool for tool in self.bonus_tools if tool not in self.tool_tags]
        if unknown:
            raise ValueError(
                f"bonus_tools {unknown} are not in tool_tags {list(self.tool_tags)}, so they could never be "
                "detected; add them to tool_tags or drop them from bonus_tools."
            )
        return self
