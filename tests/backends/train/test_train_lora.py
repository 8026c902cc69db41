"""LoRA: merged weights equal peft's own merge; LoRA training is rank-invariant; export loads with from_pretrained."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from tests.backends.train.conftest import launch

from arpo_backends.models.tiny import build_tiny_model
from arpo_backends.train.lora import hf_name, hf_state_items


def test_hf_name_strips_wrappers_anywhere() -> None:
    assert hf_name("module._orig_mod.model.layers.0.mlp.up_proj.weight") == "model.layers.0.mlp.up_proj.weight"
    assert hf_name("base_model.model.model.norm.weight") == "model.norm.weight"
    assert hf_name("model.layers.1._checkpoint_wrapped_module.self_attn.q_proj.weight") == (
        "model.layers.1.self_attn.q_proj.weight"
    )


def test_streamed_merge_equals_peft_merge_and_unload() -> None:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(build_tiny_model(), dtype=torch.float32)
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=12, target_modules="all-linear", task_type="CAUSAL_LM"))
    torch.manual_seed(3)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_()  # peft initialises B to 0, which would make any merge look right
    ours = dict(hf_state_items(model.state_dict().items(), lora_scaling=12 / 4))
    theirs = model.merge_and_unload().state_dict()
    assert set(ours) == set(theirs)
    changed = 0
    for name, tensor in theirs.items():
        torch.testing.assert_close(ours[name], tensor, rtol=1e-5, atol=1e-6)
        changed += "proj" in name
    assert changed > 0


def test_lora_tensor_without_lora_config_is_refused() -> None:
    items = [("base_model.model.x.lora_A.default.weight", torch.zeros(1))]
    with pytest.raises(ValueError, match="lora_scaling"):
        list(hf_state_items(items))


LORA: dict[str, Any] = {"model": "tiny", "optim": {"lr": 1e-2}, "lora": {"rank": 4, "alpha": 8}}


@pytest.mark.slow
def test_lora_two_ranks_match_one_and_export_loads(tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    one = launch(tmp_path, "one", {"config": {**LORA, "backend": "fsdp"}, "steps": 2})
    export = tmp_path / "export"
    two = launch(
        tmp_path,
        "two",
        {"config": {**LORA, "backend": "deepspeed", "micro_batch_tokens": 48}, "steps": 2, "export": str(export)},
        nproc=2,
    )
    for a, b in zip(one.metrics, two.metrics, strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-4, abs=1e-6)
    w1, w2 = one.weights, two.weights
    assert set(w1) == set(w2) and not any("lora" in n for n in w1)
    for name in w1:
        assert w1[name] == pytest.approx(w2[name], rel=1e-4, abs=1e-4), name

    loaded = AutoModelForCausalLM.from_pretrained(export, dtype=torch.float32).state_dict()
    original = AutoModelForCausalLM.from_pretrained(build_tiny_model(), dtype=torch.float32).state_dict()
    for name, value in w2.items():
        assert float(loaded[name].double().sum()) == pytest.approx(value, rel=1e-6, abs=1e-6), name
    assert any(not torch.equal(loaded[n], original[n]) for n in original if "proj" in n)
    assert (export / "tokenizer.json").is_file() and json.loads((export / "config.json").read_text())


@pytest.mark.slow
@pytest.mark.parametrize("lora", [True, False])
def test_kl_penalty_to_the_initial_policy(tmp_path: Path, lora: bool) -> None:
    """kl is 0 on the first step (policy = reference) and positive once the policy moved."""
    config: dict[str, Any] = {"model": "tiny", "optim": {"lr": 1e-2}, "loss": {"kl_coef": 0.1}}
    if lora:
        config["lora"] = {"rank": 4}
    metrics = launch(tmp_path, "kl", {"config": config, "steps": 3}).metrics
    assert metrics[0]["kl"] == pytest.approx(0.0, abs=1e-7)
    assert metrics[2]["kl"] > 1e-6
