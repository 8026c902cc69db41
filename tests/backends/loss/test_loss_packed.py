"""Tree-packed training (spec §6): a shared prefix computed once, with the sum of its descendants' surrogates,
equals the trajectory-expanded loss — values and gradients — on a hand-built tree and on simulated ARPO groups.

The hand tree (trajectory: path; advantages 1.0, −0.5, 0.25)::

    prompt [101 102 103] ─ g1 [11 12] ─ tool [201 202 203] ─ g3 [13 14]      trajectory 0
                         │                                 └ g4 [15]         trajectory 1 (branch)
                         └ g5 [16 17 18 19]                                  trajectory 2 (global)

Packed buffer (index: token): 0-2 prompt, 3-4 g1, 5-7 tool, 8-9 g3, 10 g4, 11-14 g5. Expanded loss tokens:
g1 2 tokens × 2 trajectories + g3 2 + g4 1 + g5 4 = 11.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import pytest
import torch

from arpo_backends.batching import collate, expand_tree, pack_tree
from arpo_backends.loss import LossConfig, arpo_loss, packed_arpo_loss, token_entropy, token_log_probs
from arpo_core.algo.advantages import group_advantages
from arpo_core.algo.branching import BranchScheduler
from arpo_core.algo.entropy import TopKTruncated
from arpo_core.algo.entropy_monitor import EntropyMonitor
from arpo_core.config import BranchingConfig
from arpo_core.simulation import expand_group
from arpo_core.testing import ScriptedPolicy, echo_tool
from arpo_core.tree import RolloutTree, SegmentKind

NAN = float("nan")
ADVANTAGES = [1.0, -0.5, 0.25]


def hand_tree() -> RolloutTree:
    t = RolloutTree("hand", [101, 102, 103])
    g1 = t.add_segment(0, "generated", [11, 12], logprobs=[-0.5, -0.25], policy_version=3)
    tool = t.add_segment(g1.node_id, SegmentKind.TOOL, [201, 202, 203])
    g3 = t.add_segment(tool.node_id, "generated", [13, 14], logprobs=[-0.1, -0.2], policy_version=4)
    g4 = t.add_segment(tool.node_id, "generated", [15], logprobs=[-1.0], policy_version=5)
    g5 = t.add_segment(0, "generated", [16, 17, 18, 19])
    t.end_trajectory(0, g3.node_id)
    t.end_trajectory(1, g4.node_id, origin="branch", parent=0)
    t.end_trajectory(2, g5.node_id)
    return t


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_pack_hand_tree_layout() -> None:
    p = pack_tree(hand_tree(), ADVANTAGES, "soft")
    assert p.token_ids.tolist() == [101, 102, 103, 11, 12, 201, 202, 203, 13, 14, 15, 16, 17, 18, 19]
    assert p.position_ids.tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 8, 3, 4, 5, 6]
    assert p.predictor_index.tolist() == [-1, 0, 1, 2, 3, 4, 5, 6, 7, 8, 7, 2, 11, 12, 13]
    assert p.loss_mask.tolist() == [False] * 3 + [True] * 2 + [False] * 3 + [True] * 7
    assert p.advantages.shape == (15, 2)
    # g1 is shared by trajectories 0 and 1 (advantages 1.0 and −0.5); the rest have one trajectory.
    assert p.advantages[3].tolist() == [1.0, -0.5] and p.descendant_mask[3].tolist() == [True, True]
    assert p.advantages[10].tolist() == [-0.5, 0.0] and p.descendant_mask[10].tolist() == [True, False]
    assert p.descendant_mask[5:8].sum() == 0 and p.descendant_mask[:3].sum() == 0  # tool result and prompt
    assert p.expanded_loss_tokens == 11
    lp = p.behaviour_logprobs.tolist()
    assert all(math.isnan(x) for x in lp[:3] + lp[5:8] + lp[11:])
    assert lp[3:5] == [-0.5, -0.25] and lp[8:11] == pytest.approx([-0.1, -0.2, -1.0])
    assert [r.tolist() for r in p.trajectory_positions] == [
        [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
        [0, 1, 2, 3, 4, 5, 6, 7, 10],
        [0, 1, 2, 11, 12, 13, 14],
    ]
    hard = pack_tree(hand_tree(), ADVANTAGES, "hard")
    assert hard.advantages[3].tolist() == [0.25, 0.25]  # mean of 1.0 and −0.5 on the shared prefix


def test_tree_attention_mask() -> None:
    p = pack_tree(hand_tree(), ADVANTAGES)
    mask = p.attention_mask()
    assert mask[10].nonzero().flatten().tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 10]  # g4 sees its path, not g3
    assert mask[12].nonzero().flatten().tolist() == [0, 1, 2, 11, 12]  # g5 sees the prompt only
    for positions in p.trajectory_positions:  # each leaf's last token sees exactly its trajectory
        assert mask[int(positions[-1])].nonzero().flatten().tolist() == sorted(positions.tolist())


def test_packed_rows_are_the_expanded_rows() -> None:
    tree = hand_tree()
    p = pack_tree(tree, ADVANTAGES)
    for sample, positions in zip(expand_tree(tree, ADVANTAGES), p.trajectory_positions, strict=True):
        assert p.token_ids[positions].tolist() == sample.token_ids.tolist()
        assert p.position_ids[positions].tolist() == list(range(sample.length))


CONFIGS = {
    "paper": LossConfig(importance_mode="off"),
    "everything": LossConfig(
        policy_loss="entropy_balanced",
        entropy_aware_advantage=True,
        kl_coef=0.1,
        entropy_coef=0.01,
        importance_cap=1.5,
    ),
}


@pytest.mark.parametrize("mode", ["soft", "hard"])
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_hand_tree_packed_equals_expanded(mode: str, name: str) -> None:
    config = CONFIGS[name]
    tree = hand_tree()
    p = pack_tree(tree, ADVANTAGES, mode)  # type: ignore[arg-type]
    mb = collate(expand_tree(tree, ADVANTAGES, mode))  # type: ignore[arg-type]
    n = p.num_tokens
    g = torch.Generator().manual_seed(0)
    # Per packed token: logp (the parameter), logp_old (ratios from 0.45 to 2.2: every clip region), ref, entropy.
    logp = (-torch.rand(n, generator=g) - 0.5).requires_grad_()
    old = logp.detach() + torch.linspace(-0.8, 0.8, n)[torch.randperm(n, generator=g)]
    ref = logp.detach() + 0.3 * torch.randn(n, generator=g)
    entropy_param = (torch.rand(n, generator=g) * 2).requires_grad_()

    packed = packed_arpo_loss(
        logp,
        old,
        p.advantages,
        p.descendant_mask,
        config=config,
        behaviour_log_prob=p.behaviour_logprobs,
        ref_log_prob=ref,
        entropy=entropy_param,
    )
    grads_packed = torch.autograd.grad(packed.loss, (logp, entropy_param), materialize_grads=True)

    def rows(values: torch.Tensor) -> torch.Tensor:  # packed (N,) → expanded (B, T), zero on padding
        width = mb.input_ids.shape[1]
        return torch.stack(
            [torch.cat([values[pos], values.new_zeros(width - len(pos))]) for pos in p.trajectory_positions]
        )

    expanded = arpo_loss(
        rows(logp),
        rows(old),
        mb.advantages,
        mb.loss_mask,
        config=config,
        behaviour_log_prob=mb.behaviour_logprobs,
        ref_log_prob=rows(ref),
        entropy=rows(entropy_param),
    )
    grads_expanded = torch.autograd.grad(expanded.loss, (logp, entropy_param), materialize_grads=True)
    assert packed.metrics["loss_tokens"].item() == expanded.metrics["loss_tokens"].item() == 11
    assert expanded.metrics["clip_frac_high"].item() > 0 and expanded.metrics["clip_frac_low"].item() > 0
    torch.testing.assert_close(packed.loss, expanded.loss)
    for key in expanded.metrics:
        torch.testing.assert_close(packed.metrics[key], expanded.metrics[key], msg=key)
    for a, b in zip(grads_packed, grads_expanded, strict=True):
        torch.testing.assert_close(a, b)


# --------------------------------------------------------------------------- end to end through a tiny model
VOCAB, HIDDEN = 512, 8


def _forward(params: tuple[torch.Tensor, torch.Tensor], ids: torch.Tensor, attend: torch.Tensor) -> torch.Tensor:
    """Mean of the embeddings a token attends to, then a linear head: ids (B, T), attend (B, T, T) → (B, T, V)."""
    embed, head = params
    weights = attend.to(embed.dtype)
    return (weights / weights.sum(dim=-1, keepdim=True)) @ embed[ids] @ head


def _params(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(VOCAB, HIDDEN, generator=g), torch.randn(HIDDEN, VOCAB, generator=g) * 0.5


@pytest.mark.parametrize("seed", [1, 2])
def test_simulated_group_packed_equals_expanded_through_a_model(seed: int) -> None:
    policy = ScriptedPolicy(seed=seed)
    tree = expand_group(
        f"g{seed}",
        [3, 4, 5],
        policy,
        echo_tool,
        BranchScheduler(BranchingConfig(budget=6, global_samples=2), seed=seed),
        EntropyMonitor(TopKTruncated(policy.vocab_size)),
        max_response_tokens=100,
    ).tree
    unique, expanded_count = tree.token_counts()
    assert unique < expanded_count, "the group must share prefixes"
    adv = group_advantages(np.random.default_rng(seed).normal(size=len(tree)))
    config = CONFIGS["everything"]
    embed, head = _params(0)
    params = (embed.requires_grad_(), head.requires_grad_())
    old_params, ref_params = _params(1), _params(2)

    p = pack_tree(tree, adv)
    tree_mask = p.attention_mask().unsqueeze(0)
    ids = p.token_ids.unsqueeze(0)
    predictor = p.predictor_index.unsqueeze(0)

    def packed_logp(w: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        logits = _forward(w, ids, tree_mask)
        return token_log_probs(logits, ids, predictor_index=predictor)[0], token_entropy(
            logits, predictor_index=predictor
        )[0]

    logp, entropy = packed_logp(params)
    with torch.no_grad():
        old, _ = packed_logp(old_params)
        ref, _ = packed_logp(ref_params)
    packed = packed_arpo_loss(
        logp, old, p.advantages, p.descendant_mask, config=config,
        behaviour_log_prob=p.behaviour_logprobs, ref_log_prob=ref, entropy=entropy,
    )  # fmt: skip
    grads_packed = torch.autograd.grad(packed.loss, params)

    mb = collate(expand_tree(tree, adv))
    width = mb.input_ids.shape[1]
    causal = torch.tril(torch.ones(width, width, dtype=torch.bool)).unsqueeze(0).expand(mb.num_rows, -1, -1)
    logits = _forward(params, mb.input_ids, causal)
    with torch.no_grad():
        old_rows = token_log_probs(_forward(old_params, mb.input_ids, causal), mb.input_ids)
        ref_rows = token_log_probs(_forward(ref_params, mb.input_ids, causal), mb.input_ids)
    expanded = arpo_loss(
        token_log_probs(logits, mb.input_ids), old_rows, mb.advantages, mb.loss_mask, config=config,
        behaviour_log_prob=mb.behaviour_logprobs, ref_log_prob=ref_rows, entropy=token_entropy(logits),
    )  # fmt: skip
    grads_expanded = torch.autograd.grad(expanded.loss, params)

    assert packed.metrics["loss_tokens"].item() == expanded.metrics["loss_tokens"].item() == p.expanded_loss_tokens
    torch.testing.assert_close(packed.loss, expanded.loss, rtol=1e-5, atol=1e-6)
    for a, b in zip(grads_packed, grads_expanded, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
