"""95% intervals of the evaluation figures: Wilson for accuracy, Student's t for means (values worked by hand)."""

from __future__ import annotations

import math

import pytest

from arpo_core.report.intervals import Z95, mean_interval, t95, wilson_interval


def test_wilson_matches_the_hand_computation_and_solves_its_own_equation() -> None:
    low, high = wilson_interval(28, 48)  # by hand: centre 0.62335, spread 0.14510, scale 1.08003
    assert low == pytest.approx(0.44281, abs=2e-5) and high == pytest.approx(0.71151, abs=2e-5)
    # second method: the bounds are the two roots π of (p̂ − π)² = z²·π(1 − π)/n
    for bound in (low, high):
        assert (28 / 48 - bound) ** 2 == pytest.approx(Z95**2 * bound * (1 - bound) / 48, rel=1e-9)


def test_wilson_stays_inside_zero_one_and_is_not_empty_at_the_edges() -> None:
    low, high = wilson_interval(0, 48)
    assert low == pytest.approx(0.0, abs=1e-12) and high == pytest.approx(
        Z95**2 / (48 + Z95**2), rel=1e-9
    )  # the upper root at p̂ = 0
    low, high = wilson_interval(48, 48)
    assert high == pytest.approx(1.0, abs=1e-12) and low == pytest.approx(48 / (48 + Z95**2), rel=1e-9)
    with pytest.raises(ValueError, match="n=0: an interval needs at least one question"):
        wilson_interval(0, 0)
    with pytest.raises(ValueError, match="successes=5 must lie between 0 and n=4"):
        wilson_interval(5, 4)


def test_mean_interval_uses_students_t() -> None:
    low, high = mean_interval([1.0, 2.0, 3.0, 4.0])  # mean 2.5, s = sqrt(5/3), t(0.975, 3) = 3.182
    half = 3.182 * math.sqrt(5 / 3) / 2
    assert (low, high) == pytest.approx((2.5 - half, 2.5 + half))
    assert t95(1) == 12.706 and t95(30) == 2.042 and t95(200) == Z95
    with pytest.raises(ValueError, match="1 value"):
        mean_interval([1.0])
