"""Prefix sharing: the trie layout by hand; the same logprobs, entropies and gradients as the padded forward, with
run-by-run tree attention and with a dense tree mask; when the trainer keeps the padded path."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from tests.backends.train._worker import make_samples

from arpo_backends.batching import collate
from arpo_backends.batching.prefix import pack_prefixes
from arpo_backends.loss import token_entropy, token_log_probs
from arpo_backends.train.base import BaseTrainer
from arpo_backends.train.config import TrainerConfig
from arpo_backends.train.model import load_policy
from arpo_backends.train.prefix_sharing import (
    attention_break_even,
    attention_implementation,
    choose_packing,
    packed_token_stats,
    packing_attention,
)
from arpo_backends.train.selective import LogitSelector
from arpo_backends.train.tree_attention import TREE_ATTENTION, TREE_MASK_PLACEHOLDER, enable_tree_attention


def _padded(rows: list[list[int]], loss_from: list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded ``(B, T)`` input_ids, attention_mask and a loss mask that is on from ``loss_from[b]``."""
    width = max(len(r) for r in rows)
    ids = torch.zeros(len(rows), width, dtype=torch.int64)
    attention = torch.zeros(len(rows), width, dtype=torch.int64)
    loss = torch.zeros(len(rows), width, dtype=torch.bool)
    for b, row in enumerate(rows):
        ids[b, : len(row)] = torch.tensor(row)
        attention[b, : len(row)] = 1
        loss[b, loss_from[b] : len(row)] = True
    return ids, attention, loss


# -- the layout -------------------------------------------------------------------------------------------------


def test_trie_layout_by_hand() -> None:
    # a 3-token prompt 5 6 7; rows 0 and 1 share one more token (8), then branch (9 | 10 11); row 2 branches at 12
    ids, attention, loss = _padded([[5, 6, 7, 8, 9], [5, 6, 7, 8, 10, 11], [5, 6, 7, 12]], [3, 3, 3])
    packing = pack_prefixes(ids, attention)

    # nodes in insertion order: 0:5 1:6 2:7 3:8 4:9 (row 0), 5:10 6:11 (row 1), 7:12 (row 2)
    assert packing.num_tokens == 8
    assert packing.token_ids.tolist() == [[5, 6, 7, 8, 9, 10, 11, 12]]
    assert packing.position_ids.tolist() == [[0, 1, 2, 3, 4, 4, 5, 3]]
    assert packing.parents.tolist() == [-1, 0, 1, 2, 3, 3, 5, 2]
    assert packing.gather_index.tolist() == [
        [0, 1, 2, 3, 4, 0],  # padding -> 0
        [0, 1, 2, 3, 5, 6],
        [0, 1, 2, 7, 0, 0],
    ]
    want = torch.tensor(
        [
            [1, 0, 0, 0, 0, 0, 0, 0],  # 5
            [1, 1, 0, 0, 0, 0, 0, 0],  # 6
            [1, 1, 1, 0, 0, 0, 0, 0],  # 7
            [1, 1, 1, 1, 0, 0, 0, 0],  # 8
            [1, 1, 1, 1, 1, 0, 0, 0],  # 9: row 0's last token
            [1, 1, 1, 1, 0, 1, 0, 0],  # 10 does not see its sibling 9
            [1, 1, 1, 1, 0, 1, 1, 0],  # 11
            [1, 1, 1, 0, 0, 0, 0, 1],  # 12 sees the prompt only
        ],
        dtype=torch.bool,
    )
    assert torch.equal(packing.attention_mask(), want.view(1, 1, 8, 8))
    # each row's new nodes, hanging from the path they branch off: attention run by run sees 5·5 + 2·(4 + 2) +
    # 1·(3 + 1) = 41 query-key pairs, the dense mask 8² = 64
    assert [(r.start, r.end, r.context.tolist()) for r in packing.runs] == [
        (0, 5, []),
        (5, 7, [0, 1, 2, 3]),
        (7, 8, [0, 1, 2]),
    ]
    assert packing.tree_attention_pairs == 41 and packing.attention_pairs == 64

    # loss tokens (row-major): (0,3) (0,4) (1,3) (1,4) (1,5) (2,3), predicted by nodes 2 3 2 3 5 2; node 2 predicts
    # 8 for rows 0 and 1 and 12 for row 2, node 3 predicts 9 and 10: each node's logits once, in buffer order
    selected, rows = packing.predictor_rows(loss)
    assert selected.tolist() == [[False, False, True, True, False, True, False, False]]
    assert rows.tolist() == [0, 1, 0, 1, 2, 0]


def test_different_prompts_are_separate_roots() -> None:
    ids, attention, _ = _padded([[3, 4], [9], [3, 4, 5]], [0, 0, 0])
    packing = pack_prefixes(ids, attention)
    assert packing.token_ids.tolist() == [[3, 4, 9, 5]]
    assert packing.position_ids.tolist() == [[0, 1, 0, 2]]
    assert packing.parents.tolist() == [-1, 0, -1, 1]
    assert packing.gather_index.tolist() == [[0, 1, 0], [2, 0, 0], [0, 1, 3]]
    want = torch.tensor([[1, 0, 0, 0], [1, 1, 0, 0], [0, 0, 1, 0], [1, 1, 0, 1]], dtype=torch.bool)
    assert torch.equal(packing.attention_mask()[0, 0], want)
    assert [(r.start, r.end, r.context.tolist()) for r in packing.runs] == [(0, 2, []), (2, 3, []), (3, 4, [0, 1])]


def test_rows_must_be_right_padded() -> None:
    ids = torch.tensor([[0, 5, 6]])
    with pytest.raises(ValueError, match="right-padded"):
        pack_prefixes(ids, torch.tensor([[0, 1, 1]]))


# -- the same numbers as the padded forward ------------------------------------------------------------------


GPU_WAY = "arpo_tree with the dense mask"


def _model(attention: str) -> torch.nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=97,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        attn_implementation=attention,
    )
    return LlamaForCausalLM(config).float()


@pytest.mark.parametrize(
    ("attention", "checkpointing"),
    [(TREE_ATTENTION, False), (TREE_ATTENTION, True), ("sdpa", False), ("eager", False), (GPU_WAY, False)],
)
def test_same_logprobs_entropies_and_gradients_as_padded(attention: str, checkpointing: bool) -> None:
    """Run by run (``arpo_tree``, also under activation checkpointing, which re-runs attention in backward) and
    with the dense tree mask (SDPA, eager), against the padded forward of the same model."""
    pool = np.random.default_rng(1).permutation(np.arange(3, 97)).tolist()  # distinct tokens: no accidental sharing

    def take(n: int) -> list[int]:
        return [pool.pop() for _ in range(n)]

    prompt_a, prompt_b, branch = take(6), take(4), take(3)
    rows = [
        prompt_a + branch + take(5),  # ARPO branches: a longer shared prefix, then a fork
        prompt_a + branch + take(2),
        prompt_a + take(7),
        prompt_b + take(9),  # another group: another root
        prompt_b + take(1),
    ]
    rows.append(list(rows[0]))  # a row identical to another
    ids, attention_mask, loss = _padded(rows, [6, 6, 6, 4, 4, 6])
    loss[0, 8:10] = False  # a tool-result span inside a response
    loss[3, 5] = False
    weights = torch.randn(ids.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)

    model = _model("eager" if attention == "eager" else "sdpa")
    positions = torch.arange(ids.shape[1]).expand_as(ids) * attention_mask
    full = model(input_ids=ids, attention_mask=attention_mask, position_ids=positions).logits
    want_logp = torch.where(loss, token_log_probs(full, ids, temperature=0.7), 0.0)
    want_h = torch.where(loss, token_entropy(full, temperature=0.7), 0.0)
    ((want_logp * weights).sum() + (want_h * weights.flip(0)).sum()).backward()
    want_grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)

    if attention in (TREE_ATTENTION, GPU_WAY):
        enable_tree_attention(model)
        if attention == GPU_WAY:  # an arpo_tree model given the dense mask, as packing_attention does off a CPU
            assert packing_attention(model, "cuda") == "sdpa" and packing_attention(model, "cpu") == TREE_ATTENTION
            attention = "sdpa"
    if checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.train()
    packing = pack_prefixes(ids, attention_mask)
    assert packing.num_tokens == 6 + 3 + 5 + 2 + 7 + 4 + 9 + 1  # the duplicate row adds nothing
    selector = LogitSelector(model)
    logp, h = packed_token_stats(
        model, selector, packing, ids, loss, attention=attention, temperature=0.7, entropy=True
    )
    assert h is not None
    torch.testing.assert_close(logp, want_logp, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(h, want_h, atol=1e-5, rtol=1e-5)
    ((logp * weights).sum() + (h * weights.flip(0)).sum()).backward()
    grads = {name: p.grad for name, p in model.named_parameters() if p.grad is not None}
    assert grads.keys() == want_grads.keys() and len(grads) == len(list(model.parameters()))
    for name, grad in grads.items():
        torch.testing.assert_close(grad, want_grads[name], atol=1e-5, rtol=1e-4, msg=name)


def test_no_loss_token_still_reaches_every_parameter() -> None:
    model = _model("sdpa")
    enable_tree_attention(model)
    ids, attention_mask, loss = _padded([[5, 6, 7], [5, 6, 8]], [3, 3])
    logp, _ = packed_token_stats(
        model, LogitSelector(model), pack_prefixes(ids, attention_mask), ids, loss, attention=TREE_ATTENTION
    )
    assert float(logp.detach().abs().sum()) == 0.0
    logp.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_tree_attention_is_sdpa_without_a_tree_and_fails_loudly_if_the_tree_is_lost() -> None:
    model = _model("sdpa")
    ids, attention_mask, _ = _padded([[5, 6, 7, 8], [5, 9]], [0, 0])
    want = model(input_ids=ids, attention_mask=attention_mask).logits
    enable_tree_attention(model)
    assert model.config._attn_implementation == TREE_ATTENTION
    torch.testing.assert_close(model(input_ids=ids, attention_mask=attention_mask).logits, want, atol=0, rtol=0)
    packing = pack_prefixes(ids, attention_mask)
    with pytest.raises(RuntimeError):  # the placeholder mask without ``prefix_tree`` must not attend everywhere
        model(input_ids=packing.token_ids, position_ids=packing.position_ids, attention_mask=TREE_MASK_PLACEHOLDER)


# -- when the padded path is kept ------------------------------------------------------------------------------


def test_padded_when_packing_saves_nothing_exceeds_the_cap_or_the_attention_takes_no_mask() -> None:
    shared_ids, shared_attention, _ = _padded([[1, 2, 3, 4, 5, 6], [1, 2, 3, 4, 5, 7]], [0, 0])
    packing = choose_packing(shared_ids, shared_attention, max_tokens=64, attention="sdpa", break_even=1000.0)
    assert packing is not None and packing.num_tokens == 7

    distinct_ids, distinct_attention, _ = _padded([[1, 2, 3], [4, 5, 6]], [0, 0])
    assert choose_packing(distinct_ids, distinct_attention, max_tokens=64, attention="sdpa") is None
    assert choose_packing(shared_ids, shared_attention, max_tokens=6, attention="sdpa") is None
    assert choose_packing(shared_ids, shared_attention, max_tokens=64, attention="flash_attention_2") is None


def test_cost_model_on_smollm2_shapes() -> None:
    """SmolLM2-135M: L* = ½ · (2·576·576 + 2·576·192 + 3·576·1536) / (2·576) = ½ · (576 + 192 + 2304) = 1536."""
    smollm2 = SimpleNamespace(
        config=SimpleNamespace(hidden_size=576, num_attention_heads=9, num_key_value_heads=3, intermediate_size=1536)
    )
    assert attention_break_even(smollm2) == 1536.0
    assert attention_break_even(SimpleNamespace()) == 1024.0  # no sizes: the conservative default

    def rows(per_group: int, prompt: int, completion: int) -> tuple[torch.Tensor, torch.Tensor]:
        completions = torch.arange(per_group * completion).view(per_group, completion) + 100
        ids = torch.cat([torch.ones(per_group, prompt, dtype=torch.int64), completions], dim=1)
        return ids, torch.ones_like(ids)

    def packs(ids: torch.Tensor, attention: str) -> bool:
        chosen = choose_packing(ids, torch.ones_like(ids), max_tokens=8192, attention=attention, break_even=1536.0)
        return chosen is not None

    # 8 × (128 + 128): padded 2048 + 8·256·257/2 / 1536 = 2219.3; dense mask 1152 + 1152² / 1536 = 2016;
    # run by run 1152 + (256·256 + 7·128·256) / 1536 = 1344
    ids, _ = rows(8, 128, 128)
    assert packs(ids, "sdpa") and packs(ids, TREE_ATTENTION)
    # 4 × (256 + 512): padded 3072 + 4·768·769/2 / 1536 = 3841; dense mask 2304 + 2304² / 1536 = 5760;
    # run by run 2304 + (768·768 + 3·512·768) / 1536 = 3456
    ids, _ = rows(4, 256, 512)
    assert not packs(ids, "sdpa") and packs(ids, TREE_ATTENTION)


def _stub_trainer(**config: Any) -> Any:
    """What ``BaseTrainer._prefix_packing`` reads of a trainer, with the invariance tests' ``tiny`` model."""
    trainer_config = TrainerConfig(model="tiny", **config)
    return SimpleNamespace(config=trainer_config, unwrapped=load_policy(trainer_config), _packing_of=None)


def test_trainer_switch_and_the_invariance_tests_micro_batches() -> None:
    """The invariance tests' micro-batches (tests/backends/train/_worker.py) do run prefix-shared, so they check
    the packed path on both backends; ``share_prefixes=False`` keeps the padded one and plain SDPA."""
    trainer = _stub_trainer()
    assert attention_implementation(trainer.unwrapped) == TREE_ATTENTION
    for samples in (make_samples(1000, groups=4), make_samples(1001, groups=1)[:2]):  # micro_batch_tokens 4096, 48
        mb = collate(samples)
        packing = BaseTrainer._prefix_packing(trainer, mb)
        assert packing is not None and packing.num_tokens < mb.padded_tokens
    assert BaseTrainer._prefix_packing(trainer, mb) is packing  # remembered for the reference pass
    off = _stub_trainer(share_prefixes=False)
    assert attention_implementation(off.unwrapped) == "sdpa"
    assert BaseTrainer._prefix_packing(off, mb) is None
    field = TrainerConfig.model_fields["share_prefixes"]
    assert field.default is True and field.description
    assert TrainerConfig.model_fields["share_prefixes_max_tokens"].description
