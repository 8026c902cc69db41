"""Invariance (TRL-style): one mini-batch of 8 trajectories computed as 1×8, as 2×4 micro-batches, under a token
budget, and over 2 simulated data-parallel ranks gives the same loss, metrics and gradients on a tiny model.

The trajectories come from core's simulated ARPO groups (branching, tool results, behaviour logprobs), through
``expand_tree`` and the batching helpers; logp_old comes from a perturbed copy of the model, so the clip, the dual
clip and the importance truncation are all active.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import pytest
import torch

from arpo_backends.batching import (
    MicroBatch,
    TrajectorySample,
    collate,
    expand_tree,
    loss_scale,
    make_micro_batches,
    partition_groups,
)
from arpo_backends.loss import (
    LossConfig,
    LossScale,
    arpo_loss,
    entropy_moments,
    sum_metrics,
    token_entropy,
    token_log_probs,
)
from arpo_core.algo.advantages import group_advantages
from arpo_core.algo.branching import BranchScheduler
from arpo_core.algo.entropy import TopKTruncated
from arpo_core.algo.entropy_monitor import EntropyMonitor
from arpo_core.config import BranchingConfig
from arpo_core.simulation import expand_group
from arpo_core.testing import ScriptedPolicy, echo_tool

VOCAB = 512
HIDDEN = 8


def _group(seed: int) -> list[TrajectorySample]:
    policy = ScriptedPolicy(seed=seed)
    config = BranchingConfig(budget=4, global_samples=2)
    tree = expand_group(
        f"g{seed}",
        [3, 4, 5],
        policy,
        echo_tool,
        BranchScheduler(config, seed=seed),
        EntropyMonitor(TopKTruncated(policy.vocab_size)),
        max_response_tokens=120,
    ).tree
    rewards = np.random.default_rng(seed).normal(size=len(tree))
    return expand_tree(tree, group_advantages(rewards), "soft")


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """Tensors this small run ~10× faster on one intra-op thread than on two busy cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def samples() -> list[TrajectorySample]:
    out = _group(1) + _group(2)
    assert len(out) == 8
    return out


class TinyCausalLM(torch.nn.Module):
    """Embedding → causal mean over the prefix → linear head: context-dependent and cheap."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.embed = torch.nn.Parameter(torch.randn(VOCAB, HIDDEN, generator=g))
        self.head = torch.nn.Parameter(torch.randn(HIDDEN, VOCAB, generator=g) * 0.5)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:  # (B, T) -> (B, T, V)
        e = self.embed[input_ids]
        prefix_mean = e.cumsum(dim=1) / torch.arange(1, input_ids.shape[1] + 1).view(1, -1, 1)
        return prefix_mean @ self.head


def _perturbed(model: TinyCausalLM, seed: int, scale: float) -> TinyCausalLM:
    other = TinyCausalLM(0)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p, q in zip(other.parameters(), model.parameters(), strict=True):
            p.copy_(q + scale * torch.randn(q.shape, generator=g))
    return other


CONFIGS = {
    "paper": LossConfig(importance_mode="off"),
    "async-tis": LossConfig(),
    "everything": LossConfig(
        policy_loss="entropy_balanced",
        entropy_aware_advantage=True,
        kl_coef=0.1,
        entropy_coef=0.01,
        importance_mode="mask",
        importance_cap=1.5,
    ),
    "seq-mean-token-mean": LossConfig(loss_aggregation="seq-mean-token-mean", kl_coef=0.1),
    "seq-mean-token-sum": LossConfig(loss_aggregation="seq-mean-token-sum"),
}


def _run(
    ranks: Sequence[Sequence[MicroBatch]], config: LossConfig, moments: torch.Tensor
) -> tuple[float, dict[str, float], list[torch.Tensor]]:
    """Sum of the losses, summed metrics, and the gradients as a backend that averages over ranks ends up with."""
    model = TinyCausalLM(0)
    old_model = _perturbed(model, 1, 0.3)
    ref_model = _perturbed(model, 2, 0.2)
    rank_grads: list[list[torch.Tensor]] = []
    outputs = []
    for micro_batches in ranks:
        model.zero_grad()
        for mb in micro_batches:
            logits = model(mb.input_ids)
            with torch.no_grad():
                old = token_log_probs(old_model(mb.input_ids), mb.input_ids)
                ref = token_log_probs(ref_model(mb.input_ids), mb.input_ids)
            out = arpo_loss(
                token_log_probs(logits, mb.input_ids),
                old,
                mb.advantages,
                mb.loss_mask,
                config=config,
                scale=mb.scale,
                behaviour_log_prob=mb.behaviour_logprobs,
                ref_log_prob=ref,
                entropy=token_entropy(logits),
                entropy_moments=moments,
            )
            out.loss.backward()
            outputs.append(out)
        rank_grads.append([p.grad.clone() for p in model.parameters() if p.grad is not None])
    averaged = [torch.stack(per_rank).mean(dim=0) for per_rank in zip(*rank_grads, strict=True)]
    metrics = sum_metrics(outputs)
    return metrics["loss"], metrics, averaged


def _global_moments(samples: Sequence[TrajectorySample]) -> torch.Tensor:
    """The entropy statistics of the whole mini-batch, from the logp_old pass (summed over its micro-batches)."""
    old_model = _perturbed(TinyCausalLM(0), 1, 0.3)
    total = torch.zeros(3, dtype=torch.float64)
    for mb in make_micro_batches(samples, max_tokens=600):
        with torch.no_grad():
            total += entropy_moments(token_entropy(old_model(mb.input_ids)), mb.loss_mask)
    return total


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_split_invariance(samples: list[TrajectorySample], name: str) -> None:
    config = CONFIGS[name]
    moments = _global_moments(samples)
    scale = loss_scale(samples)
    whole = [[collate(samples)]]
    halves = [[collate(samples[:4], scale=scale), collate(samples[4:], scale=scale)]]
    budget = [make_micro_batches(samples, max_tokens=300)]
    assert len(budget[0]) > 2
    dp_scale = loss_scale(samples, data_parallel_size=2)
    ranks = [
        make_micro_batches(part, max_tokens=400, scale=dp_scale, min_micro_batches=2)
        for part in partition_groups(samples, 2)
    ]
    assert all(len(r) == 2 for r in ranks)

    loss, metrics, grads = _run(whole, config, moments)
    assert metrics["clip_frac_high"] + metrics["clip_frac_low"] > 0.05, "the test must exercise the clip"
    assert metrics["loss_tokens"] == scale.global_tokens
    for layout in (halves, budget, ranks):
        other_loss, other_metrics, other_grads = _run(layout, config, moments)
        assert other_loss == pytest.approx(loss, rel=1e-5, abs=1e-6)
        for key, value in metrics.items():
            assert other_metrics[key] == pytest.approx(value, rel=1e-5, abs=1e-6), key
        for a, b in zip(grads, other_grads, strict=True):
            torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-7)


def test_per_micro_batch_normalisation_would_not_be_invariant(samples: list[TrajectorySample]) -> None:
    """The control: dividing each micro-batch by its own token count (verl 0.3's agg_loss) changes the loss."""
    model = TinyCausalLM(0)
    old_model = _perturbed(model, 1, 0.3)

    def loss_of(mb: MicroBatch, scale: LossScale | None) -> float:
        with torch.no_grad():
            lp = token_log_probs(model(mb.input_ids), mb.input_ids)
            old = token_log_probs(old_model(mb.input_ids), mb.input_ids)
            return float(arpo_loss(lp, old, mb.advantages, mb.loss_mask, scale=scale).loss)

    whole = loss_of(collate(samples), None)
    local = sum(loss_of(collate(part), None) for part in (samples[:4], samples[4:])) / 2
    exact = sum(loss_of(collate(part), loss_scale(samples)) for part in (samples[:4], samples[4:]))
    assert exact == pytest.approx(whole, rel=1e-5)
    assert abs(local - whole) > 1e-3
