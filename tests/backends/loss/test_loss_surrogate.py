"""The clipped surrogate, dual clip, masks and AEPO's entropy-balanced clip, against numbers worked out by hand.

The 2×3 case used throughout (logp_old = 0, so r = exp(logp)), ε_low = ε_high = 0.2, c = 3:

    row 0, A = +1, r = 1.5, 0.5, 1.1  → ℓ = −1.2 (clipped high), −0.5 (A > 0 below the clip: unclipped), −1.1
    row 1, A = −1, r = 0.5, 4.0, 1.1  → ℓ = +0.8 (clipped low), +3.0 (dual clip: −c·A), +1.1
    token-mean = (−1.2 − 0.5 − 1.1 + 0.8 + 3.0 + 1.1) / 6 = 2.1 / 6 = 0.35
    ∂L/∂logp = −A·r/6 on unclipped tokens, 0 on clipped ones.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from arpo_backends.loss import (
    LossConfig,
    PolicyLoss,
    arpo_loss,
    entropy_balanced_surrogate,
    get_policy_loss,
    ppo_surrogate,
)

RATIOS = [[1.5, 0.5, 1.1], [0.5, 4.0, 1.1]]
ADVANTAGES = [[1.0, 1.0, 1.0], [-1.0, -1.0, -1.0]]


def _inputs(dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    log_prob = torch.log(torch.tensor(RATIOS, dtype=dtype)).requires_grad_()
    return log_prob, torch.zeros(2, 3, dtype=dtype), torch.tensor(ADVANTAGES, dtype=dtype)


def test_clip_high_low_and_dual_by_hand() -> None:
    log_prob, old, adv = _inputs()
    out = arpo_loss(log_prob, old, adv, torch.ones(2, 3))
    assert out.loss.item() == pytest.approx(0.35, abs=1e-6)
    out.loss.backward()
    expected = torch.tensor([[0.0, -0.5, -1.1], [0.0, 0.0, 1.1]]) / 6
    torch.testing.assert_close(log_prob.grad, expected)
    m = out.metrics
    assert m["clip_frac_high"].item() == pytest.approx(1 / 6)
    assert m["clip_frac_low"].item() == pytest.approx(1 / 6)
    assert m["clip_frac_dual"].item() == pytest.approx(1 / 6)
    assert m["loss_tokens"].item() == 6
    assert m["ratio_mean"].item() == pytest.approx((1.5 + 0.5 + 1.1 + 0.5 + 4.0 + 1.1) / 6, rel=1e-6)
    # ppo_kl = mean(logp_old − logp) (verl's k1); approx_kl = mean(r − 1 − log r) (k3).
    logs = [math.log(r) for row in RATIOS for r in row]
    assert m["ppo_kl"].item() == pytest.approx(-sum(logs) / 6, rel=1e-5)
    k3 = sum(r - 1 - math.log(r) for row in RATIOS for r in row) / 6
    assert m["approx_kl"].item() == pytest.approx(k3, rel=1e-5)


def test_dual_clip_off_and_asymmetric_clip() -> None:
    log_prob, old, adv = _inputs()
    # No dual clip: the r = 4.0, A = −1 token costs 4.0 instead of 3.0.
    out = arpo_loss(log_prob, old, adv, torch.ones(2, 3), config=LossConfig(dual_clip=None))
    assert out.loss.item() == pytest.approx((2.1 + 1.0) / 6, abs=1e-6)
    assert out.metrics["clip_frac_dual"].item() == 0.0
    # ε_high = 0.6 lets r = 1.5 through (−1.5 instead of −1.2); ε_low = 0.6 lets r = 0.5 through (0.5 instead of 0.8).
    out = arpo_loss(log_prob, old, adv, torch.ones(2, 3), config=LossConfig(clip_low=0.6, clip_high=0.6))
    assert out.loss.item() == pytest.approx((2.1 - 0.3 - 0.3) / 6, abs=1e-6)
    assert out.metrics["clip_frac_high"].item() == 0.0
    assert out.metrics["clip_frac_low"].item() == 0.0


def test_masked_tokens_are_excluded_from_loss_and_count() -> None:
    log_prob, old, adv = _inputs()
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])  # the last token of row 1 is a tool-result token
    out = arpo_loss(log_prob, old, adv, mask)
    assert out.loss.item() == pytest.approx((2.1 - 1.1) / 5, abs=1e-6)
    assert out.metrics["loss_tokens"].item() == 5
    out.loss.backward()
    assert log_prob.grad is not None
    assert log_prob.grad[1, 2].item() == 0.0
    assert log_prob.grad[0, 1].item() == pytest.approx(-0.5 / 5)


def test_garbage_on_masked_tokens_cannot_poison_the_loss() -> None:
    log_prob, old, adv = _inputs()
    log_prob = log_prob.detach().clone()
    log_prob[1, 2] = -float("inf")  # e.g. a padded position
    old = old.clone()
    old[1, 2] = float("nan")
    log_prob.requires_grad_()
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    out = arpo_loss(log_prob, old, adv, mask, behaviour_log_prob=torch.full((2, 3), float("nan")))
    assert out.loss.item() == pytest.approx(1.0 / 5, abs=1e-6)
    out.loss.backward()
    assert log_prob.grad is not None and torch.isfinite(log_prob.grad).all()
    assert all(torch.isfinite(v).all() for v in out.metrics.values())


def test_ratio_one_gives_minus_mean_advantage() -> None:
    # First micro-batch of a one-epoch step: logp = logp_old, so L = −mean(A) and ∂L/∂logp = −A/N.
    log_prob = torch.tensor([[-1.0, -2.0, -0.5], [-0.1, -3.0, -1.5]], requires_grad=True)
    adv = torch.tensor([[0.5, 0.5, 0.5], [-2.0, -2.0, -2.0]])
    out = arpo_loss(log_prob, log_prob.detach(), adv, torch.ones(2, 3))
    assert out.loss.item() == pytest.approx(-(1.5 - 6.0) / 6, abs=1e-6)
    out.loss.backward()
    torch.testing.assert_close(log_prob.grad, -adv / 6)
    assert out.metrics["clip_frac_high"].item() == 0.0


def test_entropy_balanced_clip_keeps_a_rescaled_gradient() -> None:
    # Same values as PPO; the clipped-high token (r = 1.5, A = 1) now has ∂ℓ/∂logp = −A·(1+ε_high) = −1.2.
    log_prob, old, adv = _inputs()
    out = arpo_loss(log_prob, old, adv, torch.ones(2, 3), config=LossConfig(policy_loss="entropy_balanced"))
    assert out.loss.item() == pytest.approx(0.35, abs=1e-6)
    out.loss.backward()
    expected = torch.tensor([[-1.2, -0.5, -1.1], [0.0, 0.0, 1.1]]) / 6
    torch.testing.assert_close(log_prob.grad, expected)
    # The low clip and the dual clip keep their zero gradient.
    assert log_prob.grad is not None
    assert log_prob.grad[1, 0].item() == 0.0 and log_prob.grad[1, 1].item() == 0.0


def _verl_dual_clip(ratio: torch.Tensor, adv: torch.Tensor, lo: float, hi: float, c: float) -> torch.Tensor:
    """verl 0.3 ``compute_policy_loss``, element-wise (max/min form)."""
    pg1 = -adv * ratio
    pg2 = -adv * torch.clamp(ratio, 1 - lo, 1 + hi)
    clip1 = torch.maximum(pg1, pg2)
    clip2 = torch.minimum(-adv * c, clip1)
    return torch.where(adv < 0, clip2, clip1)


@settings(max_examples=60, deadline=None)
@given(
    ratios=st.lists(st.floats(0.01, 10.0), min_size=1, max_size=16),
    advs=st.lists(st.floats(-3.0, 3.0), min_size=16, max_size=16),
    lo=st.floats(0.0, 0.9),
    hi=st.floats(0.0, 2.0),
    c=st.floats(1.01, 10.0),
)
def test_case_form_equals_verl_max_min_form(
    ratios: list[float], advs: list[float], lo: float, hi: float, c: float
) -> None:
    ratio = torch.tensor(ratios, dtype=torch.float64)
    adv = torch.tensor(advs[: len(ratios)], dtype=torch.float64)
    ours = ppo_surrogate(ratio, adv, clip_low=lo, clip_high=hi, dual_clip=c).loss
    torch.testing.assert_close(ours, _verl_dual_clip(ratio, adv, lo, hi, c))
    balanced = entropy_balanced_surrogate(ratio, adv, clip_low=lo, clip_high=hi, dual_clip=c).loss
    torch.testing.assert_close(balanced, ours)


def test_surrogates_broadcast_over_descendants() -> None:
    ratio = torch.tensor([[1.5], [0.5]])  # (N, 1)
    adv = torch.tensor([[1.0, -1.0], [1.0, -1.0]])  # (N, D)
    terms = ppo_surrogate(ratio, adv, clip_low=0.2, clip_high=0.2, dual_clip=3.0)
    torch.testing.assert_close(terms.loss, torch.tensor([[-1.2, 1.5], [-0.5, 0.8]]))
    assert terms.clipped_high.tolist() == [[True, False], [False, False]]
    assert terms.clipped_low.tolist() == [[False, False], [False, True]]


def test_registry_and_config_validation() -> None:
    assert get_policy_loss("ppo") is ppo_surrogate
    assert get_policy_loss(PolicyLoss.ENTROPY_BALANCED) is entropy_balanced_surrogate
    with pytest.raises(ValueError, match="not registered"):
        get_policy_loss("gspo")
    cfg = LossConfig()
    assert (cfg.clip_low, cfg.clip_high, cfg.dual_clip, cfg.kl_coef, cfg.entropy_coef) == (0.2, 0.2, 3.0, 0.0, 0.0)
    assert cfg.loss_aggregation.value == "token-mean" and cfg.importance_cap == 2.0
    with pytest.raises(ValueError, match="dual_clip"):
        LossConfig(dual_clip=1.0)
    with pytest.raises(ValueError, match="clip_lo"):
        LossConfig(clip_lo=0.1)  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="frozen"):
        cfg.clip_low = 0.3  # type: ignore[misc]
    assert all(field.description for field in LossConfig.model_fields.values())


def test_shape_mismatch_is_named() -> None:
    with pytest.raises(ValueError, match="advantages has shape"):
        arpo_loss(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2, 4), torch.ones(2, 3))


def test_inconsistent_scale_is_refused_and_empty_batches_give_zero() -> None:
    from arpo_backends.loss import LossScale

    log_prob, old, adv = _inputs()
    with pytest.raises(ValueError, match="global_sequences is 0"):
        arpo_loss(
            log_prob,
            old,
            adv,
            torch.ones(2, 3),
            scale=LossScale(global_tokens=6),
            config=LossConfig(loss_aggregation="seq-mean-token-mean"),
        )
    out = arpo_loss(log_prob, old, adv, torch.zeros(2, 3))
    assert out.loss.item() == 0.0 and out.metrics["loss_tokens"].item() == 0
    # seq-mean-token-mean by hand: row 0 (−1.2 − 0.5 − 1.1)/3, row 1 (0.8 + 3.0)/2 (its last token masked).
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    out = arpo_loss(log_prob, old, adv, mask, config=LossConfig(loss_aggregation="seq-mean-token-mean"))
    assert out.loss.item() == pytest.approx((-2.8 / 3 + 3.8 / 2) / 2, abs=1e-6)
    out = arpo_loss(log_prob, old, adv, mask, config=LossConfig(loss_aggregation="seq-mean-token-sum"))
    assert out.loss.item() == pytest.approx((-2.8 + 3.8) / 2, abs=1e-6)
    # data_parallel_size multiplies the loss to backpropagate, not the reported share.
    out = arpo_loss(log_prob, old, adv, mask, scale=LossScale(global_tokens=5, data_parallel_size=4))
    assert out.loss.item() == pytest.approx(4 * 1.0 / 5, abs=1e-6)
    assert out.metrics["loss"].item() == pytest.approx(1.0 / 5, abs=1e-6)
