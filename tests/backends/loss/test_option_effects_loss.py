"""Every option of ``LossConfig`` changes the loss (issue 14, item 3), checked against numbers written out by hand.

Two levels: ``arpo_loss`` on one- to four-token tensors for the surrogate, clipping, aggregation, KL, entropy,
importance and AEPO options; and ``ppo_step`` (the step every backend shares) with a one-parameter runner for the
options that need something the step must fetch — entropies, reference logprobs, behaviour logprobs — so a step
that stopped passing them, or stopped passing ``config.loss``, fails here too.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch

from arpo_backends.batching import MicroBatch, TrajectorySample
from arpo_backends.loss import LossConfig, arpo_loss
from arpo_backends.train.config import TrainerConfig
from arpo_backends.train.dist import DistContext
from arpo_backends.train.step import ppo_step

K3_HALF = math.exp(0.5) - 0.5 - 1.0  # k3 at δ = logp_ref − logp = 0.5


def loss_of(
    ratio: list[float],
    advantages: list[float],
    *,
    mask: list[list[bool]] | None = None,
    grad: bool = False,
    **options: Any,
) -> tuple[float, list[float]]:
    """(loss, ∂loss/∂logp) at the given per-token ratios (old logprob −1), one row unless ``mask`` gives the rows;
    ``behaviour_log_prob``, ``ref_log_prob`` and ``entropy`` are per-token lists, everything else a LossConfig field."""
    shape = (len(mask), len(mask[0])) if mask is not None else (1, len(ratio))

    def tensor(values: list[float]) -> torch.Tensor:
        return torch.tensor(values, dtype=torch.float64).reshape(shape)

    old = torch.full(shape, -1.0, dtype=torch.float64)
    logp = (old + torch.log(tensor(ratio))).requires_grad_(grad)
    loss_mask = torch.tensor(mask) if mask is not None else torch.ones(shape, dtype=torch.bool)
    inputs = ("behaviour_log_prob", "ref_log_prob", "entropy")
    extra = {name: tensor(value) for name, value in options.items() if name in inputs}
    config = LossConfig(**{name: value for name, value in options.items() if name not in inputs})
    out = arpo_loss(
        logp,
        old,
        tensor(advantages),
        loss_mask,
        config=config,
        behaviour_log_prob=extra.get("behaviour_log_prob"),
        ref_log_prob=extra.get("ref_log_prob"),
        entropy=extra.get("entropy"),
    )
    value = float(out.loss.detach())
    if not grad:
        return value, []
    out.loss.backward()
    assert logp.grad is not None
    return value, [float(g) for g in logp.grad.ravel()]


# ---------------------------------------------------------------------------------------------- the surrogate


def test_policy_loss_entropy_balanced_keeps_the_upper_clip_gradient() -> None:
    # A = 1, r = 1.5 > 1 + ε_high: PPO's value −(1+ε)·A with zero gradient; AEPO's the same value with −(1+ε)·A
    ppo = loss_of([1.5], [1.0], grad=True, policy_loss="ppo")
    balanced = loss_of([1.5], [1.0], grad=True, policy_loss="entropy_balanced")
    assert ppo[0] == pytest.approx(-1.2) and ppo[1] == pytest.approx([0.0])
    assert balanced[0] == pytest.approx(-1.2) and balanced[1] == pytest.approx([-1.2])


@pytest.mark.parametrize(("clip_low", "expected"), [(0.2, 0.8), (0.4, 0.7)])
def test_clip_low_bounds_the_ratio_of_a_negative_advantage(clip_low: float, expected: float) -> None:
    # A = −1, r = 0.7: max(−A·r, −A·clip(r, 1 − ε_low, 1 + ε_high)) = max(0.7, max(0.7, 1 − ε_low))
    assert loss_of([0.7], [-1.0], clip_low=clip_low)[0] == pytest.approx(expected)


@pytest.mark.parametrize(("clip_high", "expected"), [(0.2, -1.2), (0.6, -1.5)])
def test_clip_high_bounds_the_ratio_of_a_positive_advantage(clip_high: float, expected: float) -> None:
    # A = 1, r = 1.5: max(−r, −min(r, 1 + ε_high))
    assert loss_of([1.5], [1.0], clip_high=clip_high)[0] == pytest.approx(expected)


@pytest.mark.parametrize(("dual_clip", "expected"), [(3.0, 3.0), (4.0, 4.0), (None, 5.0)])
def test_dual_clip_caps_the_loss_of_a_negative_advantage(dual_clip: float | None, expected: float) -> None:
    # A = −1, r = 5: PPO gives max(5, 1.2) = 5; the dual clip caps it at −c·A = c
    assert loss_of([5.0], [-1.0], dual_clip=dual_clip)[0] == pytest.approx(expected)


@pytest.mark.parametrize(
    ("aggregation", "expected"),
    [("token-mean", -5 / 4), ("seq-mean-token-mean", (-1 - 2) / 2), ("seq-mean-token-sum", (-3 - 2) / 2)],
)
def test_loss_aggregation(aggregation: str, expected: float) -> None:
    # r = 1: ℓ = −A. Row 1: three tokens with A = 1; row 2: one token with A = 2 (then padding)
    loss, _ = loss_of(
        [1.0] * 8,
        [1.0, 1.0, 1.0, 0.0, 2.0, 0.0, 0.0, 0.0],
        mask=[[True, True, True, False], [True, False, False, False]],
        loss_aggregation=aggregation,
    )
    assert loss == pytest.approx(expected)


# ---------------------------------------------------------------------------------------------- KL and entropy


@pytest.mark.parametrize("coef", [0.1, 0.3])
def test_kl_coef_weights_the_kl_penalty(coef: float) -> None:
    # A = 0 and r = 1: the loss is the KL term alone, coef · k3(δ = 0.5)
    assert loss_of([1.0], [0.0], kl_coef=coef, ref_log_prob=[-0.5])[0] == pytest.approx(coef * K3_HALF)


@pytest.mark.parametrize(("estimator", "kl"), [("k1", -0.5), ("k2", 0.125), ("k3", K3_HALF)])
def test_kl_estimator(estimator: str, kl: float) -> None:
    # δ = logp_ref − logp = 0.5: k1 = −δ, k2 = δ²/2, k3 = e^δ − δ − 1
    assert loss_of([1.0], [0.0], kl_coef=1.0, kl_estimator=estimator, ref_log_prob=[-0.5])[0] == pytest.approx(kl)


@pytest.mark.parametrize("coef", [0.1, 0.5])
def test_entropy_coef_subtracts_the_entropy_bonus(coef: float) -> None:
    assert loss_of([1.0, 1.0], [0.0, 0.0], entropy_coef=coef, entropy=[0.2, 0.6])[0] == pytest.approx(-coef * 0.4)


# ---------------------------------------------------------------------------------------------- importance weights


@pytest.mark.parametrize(("mode", "expected"), [("truncate", -2.0), ("mask", 0.0), ("off", -1.0)])
def test_importance_mode(mode: str, expected: float) -> None:
    # logp_old = −1, logp_behav = −2.5: w = e^1.5 ≈ 4.48 > C = 2; ℓ = −A = −1
    assert loss_of([1.0], [1.0], importance_mode=mode, behaviour_log_prob=[-2.5])[0] == pytest.approx(expected)


@pytest.mark.parametrize(("cap", "expected"), [(2.0, -2.0), (5.0, -math.exp(1.5))])
def test_importance_cap(cap: float, expected: float) -> None:
    got = loss_of([1.0], [1.0], importance_mode="truncate", importance_cap=cap, behaviour_log_prob=[-2.5])[0]
    assert got == pytest.approx(expected)


# ---------------------------------------------------------------------------------------------- AEPO advantage


@pytest.mark.parametrize(
    ("aware", "coef", "expected"),
    [
        (False, 0.2, -(1 + 1 + 2) / 3),  # Â as given
        (True, 0.2, -(0.8 + 1 + 2.4) / 3),  # Â·(1 + 0.2·z), z = (−1, 0, 1)
        (True, 0.5, -(0.5 + 1 + 3) / 3),  # Â·(1 + 0.5·z)
    ],
    ids=["off", "entropy_aware_advantage", "entropy_advantage_coef"],
)
def test_entropy_aware_advantage_and_its_coefficient(aware: bool, coef: float, expected: float) -> None:
    # entropies 0.1, 0.5, 0.9: mean 0.5, sample std 0.4, so z = −1, 0, 1; r = 1 makes ℓ = −Ã
    got = loss_of(
        [1.0] * 3,
        [1.0, 1.0, 2.0],
        entropy_aware_advantage=aware,
        entropy_advantage_coef=coef,
        entropy=[0.1, 0.5, 0.9],
    )[0]
    assert got == pytest.approx(expected)


# ---------------------------------------------------------------------------------------------- through ppo_step

CPU = DistContext(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))


class _Runner:
    """logp_t = θ·c_t with c_t = −id_t/100 (θ = 1), entropy h_t = id_t/100 when asked, reference logp c_t + 0.5."""

    def __init__(self) -> None:
        self.theta = torch.nn.Parameter(torch.tensor(1.0, dtype=torch.float64))
        self.losses: list[float] = []
        self.entropy_asked: list[bool] = []

    def _c(self, mb: MicroBatch) -> torch.Tensor:
        return -mb.input_ids.to(torch.float64) / 100.0

    def token_stats(self, mb: MicroBatch, *, entropy: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        self.entropy_asked.append(entropy)
        h = torch.where(mb.loss_mask, -self._c(mb), 0.0) if entropy else None
        return torch.where(mb.loss_mask, self.theta * self._c(mb), 0.0), h

    def reference_log_probs(self, mb: MicroBatch) -> torch.Tensor | None:
        return torch.where(mb.loss_mask, self._c(mb) + 0.5, 0.0)

    def backward(self, loss: torch.Tensor) -> None:
        self.losses.append(float(loss.detach()))
        loss.backward()

    def update(self) -> tuple[float, float]:
        self.theta.grad = None
        return 0.0, 0.1


def _sample(index: int, response: list[int], advantage: float, weights: list[float] | None = None) -> Any:
    """One trajectory after the prompt [1, 2]; ``weights``: raw importance weights exp(logp_old − logp_behav)."""
    ids = np.array([1, 2, *response], dtype=np.int64)
    mask = np.array([False, False] + [True] * len(response))
    behaviour = np.full(len(ids), np.nan)
    if weights is not None:
        behaviour[2:] = -ids[2:] / 100.0 - np.log(weights)
    return TrajectorySample("g", index, ids, mask, np.where(mask, advantage, 0.0), behaviour, 2)


def _step_loss(samples: list[Any], micro_batch_tokens: int = 8192, **loss: Any) -> tuple[float, _Runner]:
    """The step's loss (the sum of its micro-batches' shares); one mini-batch and one epoch, so r = 1, ℓ = −A."""
    runner = _Runner()
    config = TrainerConfig(loss=LossConfig(**loss), micro_batch_tokens=micro_batch_tokens)
    ppo_step(runner, samples, config, CPU, device=torch.device("cpu"))
    return sum(runner.losses), runner


@pytest.mark.parametrize(
    ("loss", "expected"),
    [
        ({"importance_mode": "off"}, -1.0),
        ({"importance_mode": "truncate", "importance_cap": 2.0}, -(1 + 2) / 2),
        ({"importance_mode": "truncate", "importance_cap": 5.0}, -(1 + 3) / 2),
        ({"importance_mode": "mask", "importance_cap": 2.0}, -(1 + 0) / 2),
    ],
    ids=["off", "truncate", "importance_cap", "mask"],
)
def test_step_applies_the_behaviour_importance_weight(loss: dict[str, Any], expected: float) -> None:
    got, _ = _step_loss([_sample(0, [20, 30], 1.0, weights=[1.0, 3.0])], **loss)
    assert got == pytest.approx(expected)


@pytest.mark.parametrize(
    ("loss", "expected"),
    [
        ({}, -1.0),
        ({"kl_coef": 0.5}, -1.0 + 0.5 * K3_HALF),
        ({"kl_coef": 0.5, "kl_estimator": "k1"}, -1.0 + 0.5 * -0.5),
    ],
    ids=["off", "kl_coef", "kl_estimator"],
)
def test_step_adds_the_kl_to_its_reference(loss: dict[str, Any], expected: float) -> None:
    got, _ = _step_loss([_sample(0, [20, 30], 1.0)], **loss)
    assert got == pytest.approx(expected)


@pytest.mark.parametrize(
    ("loss", "expected"),
    [
        ({}, -(1 + 1 - 1) / 3),
        ({"entropy_coef": 0.1}, -(1 + 1 - 1) / 3 - 0.1 * (0.2 + 0.3 + 0.4) / 3),
        ({"entropy_aware_advantage": True}, -(0.8 + 1.0 - 1.2) / 3),
        ({"entropy_aware_advantage": True, "entropy_advantage_coef": 0.5}, -(0.5 + 1.0 - 1.5) / 3),
    ],
    ids=["off", "entropy_coef", "entropy_aware_advantage", "entropy_advantage_coef"],
)
def test_step_measures_the_entropy_the_loss_needs(loss: dict[str, Any], expected: float) -> None:
    # entropies 0.2, 0.3, 0.4 over the mini-batch: z = −1, 0, 1; advantages +1, +1 (trajectory 0), −1 (trajectory 1).
    # Two micro-batches (4 and 3 tokens): z must come from the whole mini-batch, not from each micro-batch.
    samples = [_sample(0, [20, 30], 1.0), _sample(1, [40], -1.0)]
    got, runner = _step_loss(samples, micro_batch_tokens=4, **loss)
    assert len(runner.losses) == 2
    assert got == pytest.approx(expected)
    assert any(runner.entropy_asked) is bool(loss)
