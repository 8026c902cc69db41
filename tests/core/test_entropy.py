"""Entropy estimators against distributions whose entropy is known by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from arpo_core.algo.entropy import (
    ExactFromLogits,
    TopKTruncated,
    TopKWithTail,
    entropy_from_logits,
    entropy_from_topk,
    entropy_from_topk_with_tail,
    make_estimator,
    window_entropy,
)


def test_uniform_has_entropy_ln_v_and_normalises_to_one() -> None:
    v = 7
    assert entropy_from_logits(np.zeros(v)) == pytest.approx(math.log(7))
    assert ExactFromLogits()(np.zeros((1, v)))[0] == pytest.approx(1.0)


def test_one_hot_has_zero_entropy() -> None:
    logits = np.array([0.0, -np.inf, -np.inf])
    assert entropy_from_logits(logits) == 0.0


def test_bernoulli_quarter_by_hand() -> None:
    # p = (1/4, 3/4) from logits (0, ln 3).  H = -(1/4) ln(1/4) - (3/4) ln(3/4) = 0.34657359 + 0.21576155
    assert entropy_from_logits(np.array([0.0, math.log(3)])) == pytest.approx(0.5623351446, abs=1e-9)


def test_temperature_scales_logits() -> None:
    # logits (0, 2 ln 3) at T = 2 are (0, ln 3): the same Bernoulli(1/4, 3/4).
    assert entropy_from_logits(np.array([0.0, 2 * math.log(3)]), temperature=2.0) == pytest.approx(0.5623351446)
    with pytest.raises(ValueError, match="temperature=0"):
        entropy_from_logits(np.zeros(3), temperature=0)


def test_topk_bounds_by_hand() -> None:
    # p = (1/2, 1/4, 1/8, 1/8) over |V| = 4, top-2 known.
    # truncated: (1/2) ln 2 + (1/4) ln 4 = ln 2 = 0.693147
    # tail: missing mass r = 1/4 over 2 tokens: -(1/4) ln(1/8) = (3/4) ln 2 -> 1.75 ln 2 = 1.213008
    # exact:  ln2/2 + ln4/4 + 2 (1/8) ln 8 = 1.75 ln 2 (the tail is uniform here, so the bound is tight)
    top2 = [[math.log(1 / 2), math.log(1 / 4)]]
    assert entropy_from_topk(top2)[0] == pytest.approx(math.log(2))
    assert entropy_from_topk_with_tail(top2, vocab_size=4)[0] == pytest.approx(1.75 * math.log(2))
    assert entropy_from_logits(np.log([0.5, 0.25, 0.125, 0.125])) == pytest.approx(1.75 * math.log(2))


def test_vllm_minus_9999_and_ragged_rows() -> None:
    rows = [[math.log(0.5), -9999.0], [math.log(0.5)]]
    h = entropy_from_topk(rows)
    assert h == pytest.approx([0.5 * math.log(2), 0.5 * math.log(2)])


def test_positive_logprob_is_rejected_with_a_clear_message() -> None:
    with pytest.raises(ValueError, match="pass log-probabilities"):
        entropy_from_topk([[0.3, 0.2]])


def test_normalised_estimators_and_factory() -> None:
    top = [[math.log(0.5), math.log(0.5)]]
    assert TopKTruncated(4)(top)[0] == pytest.approx(math.log(2) / math.log(4))
    assert isinstance(make_estimator("topk_tail", 4), TopKWithTail)
    with pytest.raises(ValueError, match="vocab_size=1"):
        make_estimator("topk", 1)
    with pytest.raises(ValueError, match="'bogus' is not a valid EstimatorKind"):
        make_estimator("bogus", 4)


@settings(max_examples=300, deadline=None)
@given(
    logits=arrays(np.float64, st.integers(2, 40), elements=st.floats(-20, 20)),
    k=st.integers(1, 40),
    temperature=st.floats(0.3, 3.0),
)
def test_truncated_le_exact_le_tail(logits: np.ndarray, k: int, temperature: float) -> None:
    v = logits.size
    z = logits / temperature
    logp = z - np.log(np.sum(np.exp(z - z.max()))) - z.max()
    top = np.sort(logp)[::-1][: min(k, v)]
    exact = entropy_from_logits(logits, temperature)
    truncated = entropy_from_topk([top])[0]
    tail = entropy_from_topk_with_tail([top], v)[0]
    assert truncated <= exact + 1e-9
    assert exact <= tail + 1e-9
    assert 0.0 <= exact <= math.log(v) + 1e-9


@settings(max_examples=100, deadline=None)
@given(logits=arrays(np.float64, st.integers(2, 30), elements=st.floats(-10, 10)), seed=st.integers(0, 99))
def test_bounds_hold_for_any_subset_not_only_the_top(logits: np.ndarray, seed: int) -> None:
    # vLLM returns the sampled token besides the top k: any subset of the vocabulary must keep the bounds.
    logp = logits - np.log(np.sum(np.exp(logits - logits.max()))) - logits.max()
    subset = np.random.default_rng(seed).permutation(logp.size)[: max(1, logp.size // 2)]
    exact = entropy_from_logits(logits)
    assert entropy_from_topk([logp[subset]])[0] <= exact + 1e-9
    assert exact <= entropy_from_topk_with_tail([logp[subset]], logp.size)[0] + 1e-9


def test_window_sum_and_mean_of_the_first_k() -> None:
    h = [0.1, 0.2, 0.3, 0.4]
    assert window_entropy(h, window=3, reduction="sum") == pytest.approx(0.6)
    assert window_entropy(h, window=3, reduction="mean") == pytest.approx(0.2)
    assert window_entropy(h, window=20, reduction="sum") == pytest.approx(1.0)
    assert window_entropy([], window=20) == 0.0
    with pytest.raises(ValueError, match="window=0"):
        window_entropy(h, window=0)
    with pytest.raises(ValueError, match="'max'"):
        window_entropy(h, window=2, reduction="max")  # type: ignore[arg-type]
