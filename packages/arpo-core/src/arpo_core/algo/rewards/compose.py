r"""ARPO's full rule-based reward of one response (paper §4.1 and appendix; spec §5)::

    R = format_penalty                                      if check_format(response) fails
    R = s + tool_bonus · [s > 0 and bonus_tools ⊆ used]     otherwise
    s = max over golds of metric(extract_boxed(answer block), gold),   metric ∈ {F1, EM, math}

Defaults (paper and reference): ``format_penalty = -1``, metric F1 with SQuAD normalisation, ``tool_bonus = 0.1``,
``bonus_tools = {search, python}``. ``used`` is the set of tools with a complete call (call followed by its
result) in the response, as found by the format check. ``response_text`` is the generated text only (the
prompt's system message contains example tags and must not be checked); tool results are part of it.

Deviations from the reference (``compute_score`` of the ARPO / Tool-Star verl fork):

* the reference decides that a tool was used by the substrings ``"</search>"`` and ``"</python>"`` anywhere in
  the response, so a closing tag quoted in a search result, in printed output or in the answer counts as a
  call; here only complete calls count;
* the reference strips the tokenizer's EOS string from the response end; here the response is expected
  without special tokens (they never change the verdict: the answer is read from inside ``<answer>``);
* everything else — −1 for a bad format or an unreadable box, F1 of the last box in the answer block, the
  bonus only for a positive score — is the reference's rule, with the format check and box extraction of
  :mod:`~arpo_core.algo.rewards.format_check` and :mod:`~arpo_core.algo.rewards.boxed` (see their notes).

F1 and EM are always reported (they are cheap, and evaluation uses EM); math equivalence is computed only when
it is the metric, since it runs SymPy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from arpo_core.algo.rewards.boxed import extract_answer_block, extract_boxed
from arpo_core.algo.rewards.config import RewardConfig
from arpo_core.algo.rewards.format_check import check_format
from arpo_core.algo.rewards.math_equivalence import math_equal
from arpo_core.algo.rewards.squad import exact_match, f1_score

__all__ = ["RewardFunction", "RewardResult", "TagProtocolReward", "compute_reward", "make_reward_function"]


@dataclass(frozen=True, slots=True)
class RewardResult:
    """The reward of one response and how it was reached."""

    score: float
    """The scalar reward: ``format_penalty``, or the answer score plus the bonus."""
    format_ok: bool
    format_reason: str | None
    """What is wrong with the format (one sentence); ``None`` when ``format_ok``."""
    answer: str | None
    """The content of the last box in the answer block; ``None`` when the format failed."""
    answer_score: float
    """The selected metric of ``answer`` (0.0 when the format failed)."""
    f1: float | None
    em: float | None
    math: bool | None
    """Math equivalence with any gold answer; ``None`` unless the metric is ``math``."""
    tools_used: frozenset[str]
    """Tools with at least one complete call (call plus result)."""
    bonus: float
    """The tool bonus added to ``answer_score`` (0.0 or ``tool_bonus``)."""

    def to_info(self) -> dict[str, Any]:
        """A JSON-ready mapping of the components, for logs and the rollout record's ``reward_info``."""
        return {
            "score": self.score,
            "format_ok": self.format_ok,
            "format_reason": self.format_reason,
            "answer": self.answer,
            "answer_score": self.answer_score,
            "f1": self.f1,
            "em": self.em,
            "math": self.math,
            "tools_used": sorted(self.tools_used),
            "bonus": self.bonus,
        }


class RewardFunction(Protocol):
    """Scores one response (generated text only) against the gold answer(s) of its prompt."""

    def __call__(self, response_text: str, ground_truth: str | Sequence[str]) -> RewardResult: ...


def _golds(ground_truth: str | Sequence[str]) -> tuple[str, ...]:
    golds = (ground_truth,) if isinstance(ground_truth, str) else tuple(ground_truth)
    if not golds:
        raise ValueError("ground_truth is an empty list; give at least one accepted answer per prompt.")
    return golds


def compute_reward(
    response_text: str, ground_truth: str | Sequence[str], config: RewardConfig | None = None
) -> RewardResult:
    """The reward of ``response_text`` against ``ground_truth`` (one gold answer or several accepted ones).

    Never raises on any response text; raises ``ValueError`` when ``ground_truth`` holds no answer at all.
    """
    cfg = config if config is not None else RewardConfig()
    golds = _golds(ground_truth)
    verdict = check_format(response_text, cfg.tool_tags, require_think=cfg.require_think)
    tools_used = frozenset(verdict.tool_calls)
    answer_block = extract_answer_block(response_text) if verdict.ok else None
    answer = extract_boxed(answer_block) if answer_block is not None else None
    if not verdict.ok or answer is None:
        return RewardResult(
            score=cfg.format_penalty,
            format_ok=False,
            format_reason=verdict.reason or "the answer block has no readable \\boxed{…}.",
            answer=None,
            answer_score=0.0,
            f1=None,
            em=None,
            math=None,
            tools_used=tools_used,
            bonus=0.0,
        )

    f1 = f1_score(answer, golds)
    em = exact_match(answer, golds)
    math: bool | None = None
    if cfg.answer_metric == "math":
        math = any(
            math_equal(answer, gold, max_chars=cfg.math_max_chars, timeout_seconds=cfg.math_timeout_seconds)
            for gold in golds
        )
        answer_score = float(math)
    else:
        answer_score = f1 if cfg.answer_metric == "f1" else em

    earns_bonus = answer_score > 0 and all(tool in tools_used for tool in cfg.bonus_tools)
    bonus = cfg.tool_bonus if earns_bonus else 0.0
    return RewardResult(
        score=answer_score + bonus,
        format_ok=True,
        format_reason=None,
        answer=answer,
        answer_score=answer_score,
        f1=f1,
        em=em,
        math=math,
        tools_used=tools_used,
        bonus=bonus,
    )


@dataclass(frozen=True, slots=True)
class TagProtocolReward:
    """The reward of the tag protocol (``<think>``, tool tags, ``<result>``, ``<answer>\\boxed{…}</answer>``)."""

    config: RewardConfig = field(default_factory=RewardConfig)

    def __call__(self, response_text: str, ground_truth: str | Sequence[str]) -> RewardResult:
        return compute_reward(response_text, ground_truth, self.config)


def make_reward_function(config: RewardConfig | None = None) -> RewardFunction:
    """The reward function a run config asks for (today always the tag-protocol reward)."""
    return TagProtocolReward(config if config is not None else RewardConfig())
