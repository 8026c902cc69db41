"""ARPO's rule-based reward (spec §5): format check, answer metrics (F1, EM, math equivalence) and tool bonus.

* :mod:`~arpo_core.algo.rewards.squad` — SQuAD normalisation, exact match, token-level F1.
* :mod:`~arpo_core.algo.rewards.boxed` — the last ``\\boxed{…}`` and the last ``<answer>`` block.
* :mod:`~arpo_core.algo.rewards.math_equivalence` — ``math_equal`` on math-verify (imported lazily).
* :mod:`~arpo_core.algo.rewards.format_check` — the tag protocol's format check.
* :mod:`~arpo_core.algo.rewards.compose` — the full reward, ``RewardResult`` and the ``RewardFunction`` protocol.
* :mod:`~arpo_core.algo.rewards.config` — ``RewardConfig``.

Importing this package imports neither sympy nor math-verify; the first ``math`` comparison does.
"""

from arpo_core.algo.rewards.boxed import contains_braced_box, extract_answer_block, extract_boxed
from arpo_core.algo.rewards.compose import (
    RewardFunction,
    RewardResult,
    TagProtocolReward,
    compute_reward,
    make_reward_function,
)
from arpo_core.algo.rewards.config import AnswerMetric, RewardConfig
from arpo_core.algo.rewards.format_check import FormatCheck, check_format
from arpo_core.algo.rewards.math_equivalence import math_equal, normalize_math_text
from arpo_core.algo.rewards.squad import exact_match, f1_score, normalize_answer

__all__ = [
    "AnswerMetric",
    "FormatCheck",
    "RewardConfig",
    "RewardFunction",
    "RewardResult",
    "TagProtocolReward",
    "check_format",
    "compute_reward",
    "contains_braced_box",
    "exact_match",
    "extract_answer_block",
    "extract_boxed",
    "f1_score",
    "make_reward_function",
    "math_equal",
    "normalize_answer",
    "normalize_math_text",
]
