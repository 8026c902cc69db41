r"""Evaluation metrics: correctness of one answer and the unbiased pass@k over n samples.

Correct: the last ``\boxed{}`` of the final answer (or the whole text when there is none) matches a gold answer
by SQuAD exact match or by math equivalence (math-verify). pass@k (Chen et al., 2021), for n samples of which c
are correct::

    pass@k = 1 − C(n − c, k) / C(n, k)          (k ≤ n; pass@1 = c / n)
"""

from __future__ import annotations

from collections.abc import Sequence
from math import comb

from arpo_core.algo.rewards import exact_match, extract_answer_block, extract_boxed, f1_score, math_equal

__all__ = ["answer_of", "is_correct", "pass_at_k"]


def pass_at_k(n: int, c: int, k: int) -> float:
    """Probability that at least one of k samples drawn from the n (c correct) is correct."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass@k needs 0 ≤ c ≤ n and 1 ≤ k ≤ n; got n={n}, c={c}, k={k}.")
    if n - c < k:
        return 1.0
    return 1.0 - comb(n - c, k) / comb(n, k)


def answer_of(text: str) -> str:
    """The answer a response commits to: the last box in its answer block, else the last box, else the text."""
    block = extract_answer_block(text)
    for source in (block, text):
        if source:
            boxed = extract_boxed(source)
            if boxed is not None:
                return boxed
    return (block or text).strip()


def is_correct(text: str, golds: Sequence[str]) -> tuple[bool, float]:
    """(exact match or math-equivalent to any gold, token F1) of the answer in ``text``."""
    answer = answer_of(text)
    f1 = f1_score(answer, list(golds)) if answer else 0.0
    if answer and exact_match(answer, list(golds)) == 1.0:
        return True, f1
    return bool(answer) and any(math_equal(answer, g) for g in golds), f1
