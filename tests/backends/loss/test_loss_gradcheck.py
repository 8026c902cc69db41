"""``torch.autograd.gradcheck`` in float64 on the whole objective, every option on, away from clip boundaries.

With the entropy-aware advantage on, the loss depends on the entropy through Â·(1 + α·z(H)) under a deliberate
stop-gradient (as AEPO's code), so there the check is on the logprobs only; the entropy bonus's gradient is checked
in the configurations without it. AEPO's entropy-balanced clip passes, by design, a gradient that is not the
derivative of its value (the value is flat past the upper clip); gradcheck cannot apply, so its gradient is
checked against PPO's plus the stop-gradient term −A·(1+ε_high)·w/N on exactly the clipped-high tokens.
"""

from __future__ import annotations

import pytest
import torch

from arpo_backends.loss import LossConfig, arpo_loss, packed_arpo_loss, token_entropy, token_log_probs

CONFIGS = {
    "paper": LossConfig(),
    "everything": LossConfig(
        kl_coef=0.05, entropy_coef=0.01, entropy_aware_advantage=True, importance_mode="truncate", dual_clip=3.0
    ),
    "aepo-advantage": LossConfig(entropy_aware_advantage=True, entropy_coef=0.01),
    "seq-mean": LossConfig(loss_aggregation="seq-mean-token-mean", kl_coef=0.05, entropy_coef=0.01),
}


def _safe_log_ratios(shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    """Log-ratios spread over all clip regions but at least 0.02 away from every boundary (ε = 0.2, c = 3)."""
    boundaries = torch.log(torch.tensor([0.8, 1.2, 3.0], dtype=torch.float64))
    x = torch.empty(shape, dtype=torch.float64).uniform_(-0.6, 1.4, generator=generator)
    near = (x.unsqueeze(-1) - boundaries).abs().min(dim=-1).values < 0.02
    return torch.where(near, x + 0.05, x)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_gradcheck_expanded(name: str) -> None:
    g = torch.Generator().manual_seed(0)
    shape = (3, 5)
    old = torch.randn(shape, dtype=torch.float64, generator=g) - 1.0
    log_prob = (old + _safe_log_ratios(shape, g)).requires_grad_()
    entropy = torch.rand(shape, dtype=torch.float64, generator=g).mul(3).requires_grad_()
    adv = torch.randn(shape, dtype=torch.float64, generator=g)
    mask = torch.tensor([[0, 1, 1, 0, 1], [1, 1, 1, 1, 0], [0, 0, 1, 1, 1]])
    behaviour = old - torch.rand(shape, dtype=torch.float64, generator=g)
    behaviour[0, 1] = float("nan")
    ref = old + 0.3 * torch.randn(shape, dtype=torch.float64, generator=g)
    config = CONFIGS[name]

    def f(lp: torch.Tensor, ent: torch.Tensor) -> torch.Tensor:
        return arpo_loss(
            lp, old, adv, mask, config=config, behaviour_log_prob=behaviour, ref_log_prob=ref, entropy=ent
        ).loss

    if config.entropy_aware_advantage:
        assert torch.autograd.gradcheck(lambda lp: f(lp, entropy.detach()), (log_prob,))
    else:
        assert torch.autograd.gradcheck(f, (log_prob, entropy))


def test_gradcheck_packed() -> None:
    g = torch.Generator().manual_seed(1)
    n, d = 6, 3
    old = torch.randn(n, dtype=torch.float64, generator=g) - 1.0
    log_prob = (old + _safe_log_ratios((n,), g)).requires_grad_()
    entropy = torch.rand(n, dtype=torch.float64, generator=g).requires_grad_()
    adv = torch.randn(n, d, dtype=torch.float64, generator=g)
    desc = torch.tensor([[1, 1, 1], [1, 1, 0], [1, 0, 0], [0, 0, 0], [1, 1, 0], [1, 0, 0]], dtype=torch.bool)
    config = LossConfig(kl_coef=0.05, entropy_coef=0.01)
    ref = old + 0.2

    def f(lp: torch.Tensor, ent: torch.Tensor) -> torch.Tensor:
        return packed_arpo_loss(lp, old, adv, desc, config=config, ref_log_prob=ref, entropy=ent).loss

    assert torch.autograd.gradcheck(f, (log_prob, entropy))
    aepo = LossConfig(entropy_aware_advantage=True)
    assert torch.autograd.gradcheck(
        lambda lp: packed_arpo_loss(lp, old, adv, desc, config=aepo, entropy=entropy.detach()).loss, (log_prob,)
    )


def test_gradcheck_from_logits() -> None:
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(2, 4, 5, dtype=torch.float64, generator=g).requires_grad_()
    ids = torch.randint(0, 5, (2, 4), generator=g)
    old = token_log_probs(logits.detach() + 0.1 * torch.randn(2, 4, 5, dtype=torch.float64, generator=g), ids)
    adv = torch.randn(2, 4, dtype=torch.float64, generator=g)
    mask = torch.tensor([[0, 1, 1, 1], [0, 0, 1, 1]])
    config = LossConfig(entropy_coef=0.01)

    def f(x: torch.Tensor) -> torch.Tensor:
        lp = token_log_probs(x, ids, temperature=0.7)
        return arpo_loss(lp, old, adv, mask, config=config, entropy=token_entropy(x, temperature=0.7)).loss

    assert torch.autograd.gradcheck(f, (logits,))


def test_entropy_balanced_gradient_is_ppo_plus_the_stop_gradient_term() -> None:
    g = torch.Generator().manual_seed(3)
    shape = (4, 6)
    old = torch.randn(shape, dtype=torch.float64, generator=g)
    log_ratio = _safe_log_ratios(shape, g)
    adv = torch.randn(shape, dtype=torch.float64, generator=g)
    mask = torch.rand(shape, generator=g) > 0.2
    behaviour = old - 0.5 * torch.rand(shape, dtype=torch.float64, generator=g)

    def grad(policy_loss: str) -> torch.Tensor:
        lp = (old + log_ratio).requires_grad_()
        config = LossConfig(policy_loss=policy_loss)
        arpo_loss(lp, old, adv, mask, config=config, behaviour_log_prob=behaviour).loss.backward()
        assert lp.grad is not None
        return lp.grad

    weight = torch.exp(old - behaviour).clamp(max=2.0)
    clipped_high = (adv > 0) & (log_ratio.exp() > 1.2) & mask
    assert clipped_high.any()
    extra = torch.where(clipped_high, -adv * 1.2 * weight, torch.zeros_like(adv)) / mask.sum()
    torch.testing.assert_close(grad("entropy_balanced"), grad("ppo") + extra)
