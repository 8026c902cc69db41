r"""95% intervals for the figures an evaluation reports (numpy-free, standard library only).

* accuracy, a proportion of ``n`` questions: the **Wilson score interval**
  ``(p̂ + z²/2n ± z·sqrt(p̂(1−p̂)/n + z²/4n²)) / (1 + z²/n)`` with ``z = 1.96`` — unlike the normal (Wald) interval it
  stays inside [0, 1] and is not empty at p̂ = 0 or 1, which small held-out sets hit;
* a mean over questions (reward, tool calls): ``mean ± t·s/sqrt(n)`` with the sample std ``s`` and Student's
  ``t(0.975, n−1)`` (from a table up to 30 degrees of freedom, 1.96 beyond: within 2% of the exact value).

Both describe the uncertainty from *which* questions were drawn, for a fixed model and greedy decoding; they say
nothing about seed-to-seed variation of training (``bench/learning.py`` measures that across seeds).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["Z95", "mean_interval", "t95", "wilson_interval"]

Z95 = 1.959963984540054
"""The standard normal's 97.5% quantile."""

_T975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip


def t95(degrees_of_freedom: int) -> float:
    """Student's t 97.5% quantile for ``degrees_of_freedom`` ≥ 1 (1.96 beyond 30)."""
    if degrees_of_freedom < 1:
        raise ValueError(f"degrees_of_freedom={degrees_of_freedom} must be at least 1 (two values or more).")
    return _T975[degrees_of_freedom - 1] if degrees_of_freedom <= len(_T975) else Z95


def wilson_interval(successes: float, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of ``successes`` out of ``n`` (``successes`` may be fractional, e.g. pass@1·n)."""
    if n < 1:
        raise ValueError(f"n={n}: an interval needs at least one question.")
    if not 0 <= successes <= n:
        raise ValueError(f"successes={successes} must lie between 0 and n={n}.")
    p = successes / n
    centre = p + z * z / (2 * n)
    spread = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    scale = 1 + z * z / n
    return max(0.0, (centre - spread) / scale), min(1.0, (centre + spread) / scale)


def mean_interval(values: Sequence[float]) -> tuple[float, float]:
    """``mean ± t(0.975, n−1)·s/√n`` over ``values`` (two or more)."""
    n = len(values)
    if n < 2:
        raise ValueError(f"{n} value(s): a t-interval needs at least two.")
    mean = sum(values) / n
    s = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = t95(n - 1) * s / math.sqrt(n)
    return mean - half, mean + half
