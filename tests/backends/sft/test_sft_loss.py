"""``sft_loss``: the token-mean NLL by hand on a tiny tensor, and invariance (TRL-style) on the tiny model: one
mini-batch of 8 SFT rows as 1×8, as 2×4 micro-batches, under a token budget, and over 4 simulated data-parallel
ranks gives the same loss, metrics and gradients."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pytest
import torch

from arpo_backends.batching import (
    MicroBatch,
    TrajectorySample,
    collate,
    loss_scale,
    make_micro_batches,
    partition_groups,
)
from arpo_backends.loss import LossScale, arpo_loss, sum_metrics, token_log_probs
from arpo_backends.sft import parse_demonstration, sft_loss, sft_micro_batch_loss, tokenize_demonstrations

INF, NAN = math.inf, math.nan


def test_value_and_gradient_by_hand() -> None:
    # masked-out positions hold garbage (−inf, NaN): selected away, not multiplied by 0
    log_prob = torch.tensor([[-INF, -1.0, -2.0, NAN], [-0.5, -3.0, NAN, -INF]], dtype=torch.float64, requires_grad=True)
    mask = torch.tensor([[0, 1, 1, 0], [1, 1, 0, 0]], dtype=torch.bool)
    out = sft_loss(log_prob, mask, LossScale(global_tokens=4.0))
    assert out.loss.item() == pytest.approx((1.0 + 2.0 + 0.5 + 3.0) / 4)  # 1.625
    assert {k: v.item() for k, v in out.metrics.items()} == {"loss": 1.625, "nll": 1.625, "loss_tokens": 4.0}
    torch.autograd.backward(out.loss)
    assert log_prob.grad is not None
    assert log_prob.grad.tolist() == [[0.0, -0.25, -0.25, 0.0], [-0.25, -0.25, 0.0, 0.0]]

    # the two rows as two calls with the mini-batch's scale: the shares add up; ×2 for two averaging ranks
    first = sft_loss(log_prob[:1], mask[:1], LossScale(global_tokens=4.0, data_parallel_size=2))
    second = sft_loss(log_prob[1:], mask[1:], LossScale(global_tokens=4.0, data_parallel_size=2))
    assert first.loss.item() == pytest.approx(2 * 0.75)
    assert second.loss.item() == pytest.approx(2 * 0.875)
    assert sum_metrics([first, second]) == pytest.approx({"loss": 1.625, "nll": 1.625, "loss_tokens": 4.0})
    # scale=None: the call is the whole mini-batch
    assert sft_loss(log_prob, mask).loss.item() == pytest.approx(1.625)


def test_empty_mask_and_bad_input() -> None:
    log_prob = torch.full((2, 3), -INF, requires_grad=True)
    empty = sft_loss(log_prob, torch.zeros(2, 3, dtype=torch.bool), LossScale(global_tokens=0.0))
    assert empty.loss.item() == 0.0 and empty.metrics["loss_tokens"].item() == 0.0
    torch.autograd.backward(empty.loss)  # no NaN gradient either
    assert log_prob.grad is not None and not log_prob.grad.isnan().any()
    with pytest.raises(ValueError, match=r"loss_mask has shape \(2, 2\) but log_prob has \(2, 3\)"):
        sft_loss(log_prob, torch.ones(2, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"global_tokens is 0 but this micro-batch has loss tokens"):
        sft_loss(torch.zeros(1, 2), torch.ones(1, 2, dtype=torch.bool), LossScale(global_tokens=0.0))


# ------------------------------------------------------------------ invariance on the tiny model


def _rows() -> list[dict[str, Any]]:
    """Eight demonstrations of different lengths and shapes (multi-turn, ARPO <result> spans, tool calls)."""
    rows: list[dict[str, Any]] = []
    for i in range(8):
        a, b = 3 + 7 * i, 11 + i
        if i % 3 == 0:
            rows.append({"prompt": f"What is {a} * {b}?", "completion": f"<answer>\\boxed{{{a * b}}}</answer>"})
        elif i % 3 == 1:
            completion = f"<python>print({a} * {b})</python> <result>\n{a * b}\n</result>" + " so" * i + " done"
            rows.append({"prompt": f"Compute {a} * {b}.", "completion": completion})
        else:
            call = {"type": "function", "function": {"name": "python", "arguments": {"code": f"{a}+{b}"}}}
            rows.append(
                {
                    "messages": [
                        {"role": "system", "content": "Use python."},
                        {"role": "user", "content": f"{a} + {b}?"},
                        {"role": "assistant", "content": "", "tool_calls": [call]},
                        {"role": "tool", "content": str(a + b)},
                        {"role": "assistant", "content": f"It is {a + b}." * (i // 2)},
                    ]
                }
            )
    return rows


@pytest.fixture(scope="module")
def samples(tiny_tokenizer: Any) -> list[TrajectorySample]:
    demos = [parse_demonstration(row, index=i) for i, row in enumerate(_rows())]
    rows, stats = tokenize_demonstrations(demos, tiny_tokenizer)
    assert stats.samples == 8 and len({s.length for s in rows}) > 4
    return rows


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    from transformers import AutoModelForCausalLM

    from arpo_backends.models.tiny import build_tiny_model

    net = AutoModelForCausalLM.from_pretrained(build_tiny_model(), dtype=torch.float64)
    net.train(False)  # no dropout: the splits must see the same function
    return net


def _run(model: torch.nn.Module, batches: Sequence[MicroBatch]) -> tuple[list[Any], dict[str, torch.Tensor]]:
    """Outputs of each micro-batch and the accumulated gradients (as gradient accumulation does)."""
    model.zero_grad(set_to_none=True)
    outputs = []
    for mb in batches:
        logits = model(input_ids=mb.input_ids, attention_mask=mb.attention_mask, position_ids=mb.position_ids).logits
        out = sft_micro_batch_loss(logits, mb)
        torch.autograd.backward(out.loss)
        outputs.append(out)
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
    return outputs, grads


def _assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys() and a
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-9, atol=1e-12, msg=name)


def test_one_by_eight_equals_two_by_four_equals_a_token_budget(
    model: torch.nn.Module, samples: list[TrajectorySample]
) -> None:
    scale = loss_scale(samples)
    whole_out, whole_grads = _run(model, [collate(samples)])
    whole = sum_metrics(whole_out)
    assert whole["loss_tokens"] == sum(s.num_loss_tokens for s in samples)
    assert whole["nll"] > 0 and whole["loss"] == whole["nll"]

    halves = [collate(samples[:4], scale=scale), collate(samples[4:], scale=scale)]
    budget = make_micro_batches(samples, max_tokens=2 * max(s.length for s in samples), scale=scale)
    assert len(budget) >= 3
    for batches in (halves, budget):
        outputs, grads = _run(model, batches)
        assert sum_metrics(outputs) == pytest.approx(whole, rel=1e-12)
        assert sum(o.loss.item() for o in outputs) == pytest.approx(whole_out[0].loss.item(), rel=1e-12)
        _assert_same(grads, whole_grads)


def test_four_ranks_that_average_gradients(model: torch.nn.Module, samples: list[TrajectorySample]) -> None:
    world = 4
    _, whole_grads = _run(model, [collate(samples)])
    whole = sum_metrics(_run(model, [collate(samples)])[0])
    scale = loss_scale(samples, data_parallel_size=world)  # the mini-batch's counts, on every rank
    per_rank = partition_groups(samples, world)
    assert sorted(s.group_id for r in per_rank for s in r) == sorted(s.group_id for s in samples)
    assert all(per_rank)
    metrics: dict[str, float] = {}
    summed: dict[str, torch.Tensor] = {}
    for rank_samples in per_rank:
        batches = make_micro_batches(rank_samples, max_tokens=max(s.length for s in rank_samples), scale=scale)
        outputs, grads = _run(model, batches)
        for key, value in sum_metrics(outputs).items():  # all-reduce SUM of the metric shares
            metrics[key] = metrics.get(key, 0.0) + value
        for name, grad in grads.items():
            summed[name] = summed.get(name, torch.zeros_like(grad)) + grad
    averaged = {name: grad / world for name, grad in summed.items()}  # what DDP/FSDP/DeepSpeed all-reduce does
    _assert_same(averaged, whole_grads)
    assert metrics == pytest.approx(whole, rel=1e-12)


def test_arpo_loss_at_ratio_one_with_unit_advantages_has_the_sft_gradient(
    model: torch.nn.Module, samples: list[TrajectorySample]
) -> None:
    """Why SFT rows carry advantages 1.0: ARPO's objective on them at r = 1 steps exactly as the NLL does."""
    mb = collate(samples)
    _, sft_grads = _run(model, [mb])
    model.zero_grad(set_to_none=True)
    logits = model(input_ids=mb.input_ids, attention_mask=mb.attention_mask, position_ids=mb.position_ids).logits
    log_prob = token_log_probs(logits, mb.input_ids)
    out = arpo_loss(
        log_prob,
        log_prob.detach(),
        mb.advantages.to(log_prob.dtype),
        mb.loss_mask,
        scale=mb.scale,
        behaviour_log_prob=mb.behaviour_logprobs,
    )
    torch.autograd.backward(out.loss)
    rl_grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
    _assert_same(rl_grads, sft_grads)
