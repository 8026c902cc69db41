"""Selected logits give the same logprobs, entropies and gradients as the full-logit path (a second method)."""

from __future__ import annotations

import pytest
import torch

from arpo_backends.loss import token_entropy, token_log_probs
from arpo_backends.models.tiny import build_tiny_model
from arpo_backends.train.selective import LogitSelector, predictor_mask, token_stats


def _model() -> torch.nn.Module:
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    return AutoModelForCausalLM.from_pretrained(build_tiny_model(), dtype=torch.float64)


def test_same_numbers_and_gradients_as_full_logits() -> None:
    model = _model()
    ids = torch.randint(5, 400, (3, 12))
    mask = torch.zeros(3, 12, dtype=torch.bool)
    mask[0, 4:9] = True
    mask[1, 2:12] = True
    mask[2, 7:8] = True
    attention = torch.ones_like(ids)

    full = model(input_ids=ids, attention_mask=attention).logits
    want_logp = torch.where(mask, token_log_probs(full, ids, temperature=0.7), 0.0)
    want_h = torch.where(mask, token_entropy(full, temperature=0.7), 0.0)
    want_logp.sum().backward()
    want_grad = model.lm_head.weight.grad.clone()
    model.zero_grad()

    selector = LogitSelector(model)
    with selector.select(predictor_mask(mask)):
        selected = model(input_ids=ids, attention_mask=attention).logits
    assert selected.shape == (int(mask.sum()), full.shape[-1])  # the head ran on 16 positions, not 36
    logp, h = token_stats(selected, ids, mask, temperature=0.7, entropy=True)
    torch.testing.assert_close(logp, want_logp)
    torch.testing.assert_close(h, want_h)
    logp.sum().backward()
    torch.testing.assert_close(model.lm_head.weight.grad, want_grad)

    # outside select() the model is untouched
    torch.testing.assert_close(model(input_ids=ids, attention_mask=attention).logits, full)
    selector.remove()


def test_no_loss_token_still_reaches_every_parameter() -> None:
    """A padding micro-batch must still run backward through the model (FSDP/ZeRO reduce inside it)."""
    model = _model()
    ids = torch.randint(5, 400, (1, 4))
    mask = torch.zeros(1, 4, dtype=torch.bool)
    selector = LogitSelector(model)
    with selector.select(predictor_mask(mask)):
        logits = model(input_ids=ids).logits
    logp, _ = token_stats(logits, ids, mask)
    assert float(logp.detach().abs().sum()) == 0.0
    logp.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_temperature_must_be_positive() -> None:
    with pytest.raises(ValueError, match="temperature=0"):
        token_stats(torch.zeros(0, 5), torch.zeros(1, 3, dtype=torch.long), torch.zeros(1, 3), temperature=0)
