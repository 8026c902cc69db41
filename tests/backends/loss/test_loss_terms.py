"""Importance weights, KL, entropy bonus, AEPO's entropy-aware advantage and token logprobs, by hand."""

from __future__ import annotations

import math

import pytest
import torch

from arpo_backends.loss import (
    ImportanceMode,
    KLEstimator,
    LossConfig,
    arpo_loss,
    behaviour_importance_weights,
    entropy_aware_advantages,
    entropy_moments,
    kl_penalty,
    standardized_entropy,
    token_entropy,
    token_log_probs,
)

NAN = float("nan")


# --------------------------------------------------------------------------- behaviour importance weights
# logp_old = 0, so w = exp(−logp_behav): behav = −ln 3 → w = 3 (over the cap 2), −ln 1.5 → 1.5, NaN → unknown → 1,
# 0 → 1, ln 2 → 0.5, −ln 2.5 → 2.5 (over the cap).
BEHAVIOUR = [[-math.log(3.0), -math.log(1.5), NAN], [0.0, math.log(2.0), -math.log(2.5)]]


def test_truncated_weights_by_hand() -> None:
    iw = behaviour_importance_weights(torch.zeros(2, 3), torch.tensor(BEHAVIOUR), cap=2.0, mode=ImportanceMode.TRUNCATE)
    torch.testing.assert_close(iw.weights, torch.tensor([[2.0, 1.5, 1.0], [1.0, 0.5, 2.0]]))
    assert iw.truncated.tolist() == [[True, False, False], [False, False, True]]
    assert iw.known.tolist() == [[True, True, False], [True, True, True]]


def test_masked_weights_by_hand() -> None:
    iw = behaviour_importance_weights(torch.zeros(2, 3), torch.tensor(BEHAVIOUR), cap=2.0, mode=ImportanceMode.MASK)
    torch.testing.assert_close(iw.weights, torch.tensor([[0.0, 1.5, 1.0], [1.0, 0.5, 0.0]]))


def test_weights_never_overflow_and_carry_no_gradient() -> None:
    old = torch.tensor([0.0, 0.0], requires_grad=True)
    iw = behaviour_importance_weights(old, torch.tensor([-1e4, NAN]), cap=2.0, mode=ImportanceMode.TRUNCATE)
    assert iw.weights.tolist() == [2.0, 1.0]
    assert not iw.weights.requires_grad


def test_importance_weight_in_the_loss_by_hand() -> None:
    # r = 1 everywhere; row 0 A = +1, row 1 A = −2: ℓ = −A·w.
    # truncate: row 0 −(2 + 1.5 + 1) = −4.5; row 1 2·(1 + 0.5 + 2) = 7  → (7 − 4.5)/6
    # mask:     row 0 −(0 + 1.5 + 1) = −2.5; row 1 2·(1 + 0.5 + 0) = 3  → 0.5/6
    # off:      row 0 −3;                    row 1 6                    → 3/6
    log_prob = torch.zeros(2, 3, requires_grad=True)
    adv = torch.tensor([[1.0, 1.0, 1.0], [-2.0, -2.0, -2.0]])
    behaviour = torch.tensor(BEHAVIOUR)
    for mode, expected, truncated in (("truncate", 2.5 / 6, 2 / 6), ("mask", 0.5 / 6, 2 / 6), ("off", 3.0 / 6, 0.0)):
        out = arpo_loss(
            log_prob,
            torch.zeros(2, 3),
            adv,
            torch.ones(2, 3),
            behaviour_log_prob=behaviour,
            config=LossConfig(importance_mode=mode),
        )
        assert out.loss.item() == pytest.approx(expected, abs=1e-6), mode
        assert out.metrics["importance_truncated_frac"].item() == pytest.approx(truncated), mode
    assert out.metrics["behaviour_known_frac"].item() == pytest.approx(5 / 6)
    # The weight scales the gradient too: ∂ℓ/∂logp = −A·w·r.
    out = arpo_loss(log_prob, torch.zeros(2, 3), adv, torch.ones(2, 3), behaviour_log_prob=behaviour)
    out.loss.backward()
    expected_grad = -adv * torch.tensor([[2.0, 1.5, 1.0], [1.0, 0.5, 2.0]]) / 6
    torch.testing.assert_close(log_prob.grad, expected_grad)


# --------------------------------------------------------------------------- KL
def test_k3_by_hand() -> None:
    # δ = ref − logp: ln 2 → 2 − ln 2 − 1;  0 → 0;  −ln 2 → 1/2 + ln 2 − 1
    log_prob = torch.zeros(3, requires_grad=True)
    ref = torch.tensor([math.log(2.0), 0.0, -math.log(2.0)])
    k3 = kl_penalty(log_prob, ref, KLEstimator.K3)
    torch.testing.assert_close(k3, torch.tensor([1 - math.log(2), 0.0, math.log(2) - 0.5]))
    k3.sum().backward()
    # ∂k3/∂logp = 1 − exp(δ): −1, 0, 1/2
    torch.testing.assert_close(log_prob.grad, torch.tensor([-1.0, 0.0, 0.5]))
    torch.testing.assert_close(kl_penalty(torch.zeros(3), ref, KLEstimator.K1), -ref)
    torch.testing.assert_close(kl_penalty(torch.zeros(3), ref, KLEstimator.K2), 0.5 * ref**2)


def test_kl_term_in_the_loss() -> None:
    # A = 0: the loss is kl_coef · token-mean(k3) over the loss tokens (row 1's last token is masked).
    ref = torch.tensor([[math.log(2.0), 0.0, -math.log(2.0)], [0.0, math.log(2.0), 5.0]])
    out = arpo_loss(
        torch.zeros(2, 3),
        torch.zeros(2, 3),
        torch.zeros(2, 3),
        torch.tensor([[1, 1, 1], [1, 1, 0]]),
        ref_log_prob=ref,
        config=LossConfig(kl_coef=0.1),
    )
    k3_sum = (1 - math.log(2)) + (math.log(2) - 0.5) + (1 - math.log(2))
    assert out.loss.item() == pytest.approx(0.1 * k3_sum / 5, abs=1e-6)
    assert out.metrics["kl"].item() == pytest.approx(k3_sum / 5, abs=1e-6)
    with pytest.raises(ValueError, match="ref_log_prob"):
        arpo_loss(
            torch.zeros(1, 2), torch.zeros(1, 2), torch.zeros(1, 2), torch.ones(1, 2), config=LossConfig(kl_coef=0.1)
        )


def test_entropy_bonus_in_the_loss() -> None:
    entropy = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], requires_grad=True)
    out = arpo_loss(
        torch.zeros(2, 3),
        torch.zeros(2, 3),
        torch.zeros(2, 3),
        torch.tensor([[1, 1, 1], [1, 1, 0]]),
        entropy=entropy,
        config=LossConfig(entropy_coef=0.01),
    )
    assert out.loss.item() == pytest.approx(-0.01 * 15 / 5, abs=1e-7)
    out.loss.backward()
    torch.testing.assert_close(entropy.grad, torch.tensor([[1.0, 1, 1], [1, 1, 0]]) * -0.01 / 5)


# --------------------------------------------------------------------------- AEPO entropy-aware advantage
# Loss-token entropies 2, 2, 3, 4, 4: mean 3, sample variance (1+1+0+1+1)/4 = 1, so z = −1, −1, 0, 1, 1.
# The masked token's entropy (100) must not enter the statistics.
ENTROPY = [[2.0, 2.0, 3.0], [4.0, 4.0, 100.0]]
MASK = [[1, 1, 1], [1, 1, 0]]


def test_standardized_entropy_by_hand() -> None:
    z = standardized_entropy(torch.tensor(ENTROPY), torch.tensor(MASK))
    torch.testing.assert_close(z, torch.tensor([[-1.0, -1.0, 0.0], [1.0, 1.0, 0.0]]))
    torch.testing.assert_close(
        entropy_moments(torch.tensor(ENTROPY), torch.tensor(MASK)), torch.tensor([5.0, 15.0, 49.0], dtype=torch.float64)
    )


def test_degenerate_entropy_spread_gives_unit_std() -> None:
    z = standardized_entropy(torch.full((2, 2), 0.7), torch.ones(2, 2))
    torch.testing.assert_close(z, torch.zeros(2, 2))
    z = standardized_entropy(torch.tensor([0.3, 9.0]), torch.tensor([1, 0]))  # one token: no NaN
    torch.testing.assert_close(z, torch.zeros(2))


def test_entropy_aware_advantage_by_hand() -> None:
    # Ã = A·(1 + 0.2·z): row 0 (A = 1) → 0.8, 0.8, 1.0; row 1 (A = −2) → −2.4, −2.4, (masked)
    adv = torch.tensor([[1.0, 1.0, 1.0], [-2.0, -2.0, -2.0]])
    tilde = entropy_aware_advantages(adv, torch.tensor(ENTROPY), torch.tensor(MASK), coef=0.2)
    torch.testing.assert_close(tilde[torch.tensor(MASK).bool()], torch.tensor([0.8, 0.8, 1.0, -2.4, -2.4]))
    # In the loss with r = 1: L = −ΣÃ/5 = −(0.8 + 0.8 + 1.0 − 2.4 − 2.4)/5 = 0.44
    out = arpo_loss(
        torch.zeros(2, 3),
        torch.zeros(2, 3),
        adv,
        torch.tensor(MASK),
        entropy=torch.tensor(ENTROPY),
        config=LossConfig(entropy_aware_advantage=True),
    )
    assert out.loss.item() == pytest.approx(0.44, abs=1e-6)
    # Statistics of the whole mini-batch can be passed in: mean 3, std 1 from elsewhere gives the same numbers,
    # while mean 2 and std 2 (moments of entropies 0, 2, 4 — n = 3, Σ = 6, Σ² = 20) gives z = 0, 0, 0.5, 1, 1.
    moments = torch.tensor([3.0, 6.0, 20.0], dtype=torch.float64)
    tilde = entropy_aware_advantages(adv, torch.tensor(ENTROPY), torch.tensor(MASK), moments=moments)
    torch.testing.assert_close(tilde[torch.tensor(MASK).bool()], torch.tensor([1.0, 1.0, 1.1, -2.4, -2.4]))
    with pytest.raises(ValueError, match="entropy"):
        arpo_loss(adv, adv, adv, torch.ones(2, 3), config=LossConfig(entropy_aware_advantage=True))


def test_entropy_aware_advantage_carries_no_entropy_gradient() -> None:
    entropy = torch.tensor(ENTROPY, requires_grad=True)
    tilde = entropy_aware_advantages(torch.ones(2, 3), entropy, torch.tensor(MASK))
    assert not tilde.requires_grad


# --------------------------------------------------------------------------- logprobs from logits
def test_token_log_probs_and_entropy_are_shifted_by_one() -> None:
    # logits at position 0 → p = (1/4, 1/4, 1/2); they score token 1 (id 2): log(1/2); entropy 1.5·ln 2.
    # logits at position 1 → uniform; they score token 2 (id 0): log(1/3); entropy ln 3. Position 0 has no predictor.
    logits = torch.tensor([[[0.0, 0.0, math.log(2.0)], [0.0, 0.0, 0.0], [5.0, -5.0, 0.0]]])
    ids = torch.tensor([[1, 2, 0]])
    torch.testing.assert_close(token_log_probs(logits, ids), torch.tensor([[0.0, math.log(0.5), math.log(1 / 3)]]))
    torch.testing.assert_close(token_entropy(logits), torch.tensor([[0.0, 1.5 * math.log(2.0), math.log(3.0)]]))
    # Temperature 2 on doubled logits is the same distribution.
    torch.testing.assert_close(token_log_probs(2 * logits, ids, temperature=2.0), token_log_probs(logits, ids))
    # An explicit predictor index: token 2 predicted from position 0 instead of 1.
    lp = token_log_probs(logits, ids, predictor_index=torch.tensor([[-1, 0, 0]]))
    torch.testing.assert_close(lp, torch.tensor([[0.0, math.log(0.5), math.log(0.25)]]))
