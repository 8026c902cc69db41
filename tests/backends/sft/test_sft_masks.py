"""Loss masks checked by hand on the tiny model's tokenizer: the decoded loss tokens are exactly the assistant's text
(content, tool calls, ``<|im_end|>``), never a role header, a system/user/tool turn or an ARPO ``<result>`` span."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from arpo_backends.batching import TrajectorySample
from arpo_backends.models.tiny import CHATML_TEMPLATE
from arpo_backends.sft import (
    ChatTemplateError,
    concatenates_cleanly,
    encode_demonstration,
    load_sft_samples,
    parse_demonstration,
    render_demonstration,
    tokenize_demonstrations,
)

TrainedRuns = Callable[[Any, TrajectorySample], list[str]]

PYTHON_TOOL = {
    "type": "function",
    "function": {"name": "python", "parameters": {"type": "object", "properties": {"code": {"type": "string"}}}},
}
TOOL_CALL_ROW: dict[str, Any] = {
    "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is 6 * 7?"},
        {
            "role": "assistant",
            "content": "Let me compute.",
            "tool_calls": [{"type": "function", "function": {"name": "python", "arguments": '{"code": "print(6*7)"}'}}],
        },
        {"role": "tool", "content": "42"},
        {"role": "assistant", "content": "The answer is 42."},
    ],
    "tools": [PYTHON_TOOL],
}
ARPO_ROW = {
    "prompt": "What is 17 * 23? Then search Paris.",
    "completion": (
        "<python>print(17 * 23)</python> <result>\n391\n</result>\n"
        "<search>Paris capital</search> <result>\nParis is the capital of France.\n</result>\n"
        "<answer>\\boxed{391}</answer>"
    ),
}


def _tokens_of(tokenizer: Any, text: str) -> list[int]:
    ids: list[int] = tokenizer(text, add_special_tokens=False)["input_ids"]
    return ids


def test_openai_tool_calls_and_tool_turns(tiny_tokenizer: Any, trained_runs: TrainedRuns) -> None:
    demo = parse_demonstration(TOOL_CALL_ROW, index=5)
    sample = encode_demonstration(demo, tiny_tokenizer)
    call = '<tool_call>{"name": "python", "arguments": {"code": "print(6*7)"}}</tool_call>'
    assert trained_runs(tiny_tokenizer, sample) == [
        f"Let me compute.{call}<|im_end|>",
        "The answer is 42.<|im_end|>",
    ]
    # the ids are the tokenizer's encoding of the whole conversation as the model's template renders it
    text = tiny_tokenizer.apply_chat_template(
        list(demo.messages), tools=[PYTHON_TOOL], tokenize=False, add_generation_prompt=False
    )
    assert "# Tools\n<tools>\n" in text  # the template saw the schemas
    assert sample.token_ids.tolist() == _tokens_of(tiny_tokenizer, text)
    # what is *not* trained: system, user and tool turns, the role headers, the newline after <|im_end|>
    untrained = tiny_tokenizer.decode(sample.token_ids[~sample.loss_mask].tolist())
    for piece in ("Be brief.", "What is 6 * 7?", "<|im_start|>tool\n42<|im_end|>", "<|im_start|>assistant\n"):
        assert piece in untrained
    assert tiny_tokenizer.decode(sample.token_ids[-1:].tolist()) == "\n" and not sample.loss_mask[-1]
    # the other fields of an SFT row
    assert sample.group_id == "sft-5" and sample.trajectory == 0 and sample.policy_version is None
    assert (sample.advantages == 1.0).all() and np.isnan(sample.behaviour_logprobs).all()
    first = int(np.flatnonzero(sample.loss_mask)[0])
    assert sample.prompt_length == first
    head = tiny_tokenizer.apply_chat_template(
        list(demo.messages[:2]), tools=[PYTHON_TOOL], tokenize=False, add_generation_prompt=True
    )
    assert sample.token_ids[:first].tolist() == _tokens_of(tiny_tokenizer, head)


def test_arpo_raw_text_masks_every_result_span(tiny_tokenizer: Any, trained_runs: TrainedRuns) -> None:
    sample = encode_demonstration(parse_demonstration(ARPO_ROW), tiny_tokenizer)
    assert trained_runs(tiny_tokenizer, sample) == [
        "<python>print(17 * 23)</python>",
        "\n<search>Paris capital</search>",
        "\n<answer>\\boxed{391}</answer><|im_end|>",
    ]
    untrained = tiny_tokenizer.decode(sample.token_ids[~sample.loss_mask].tolist())
    assert " <result>\n391\n</result>" in untrained
    assert " <result>\nParis is the capital of France.\n</result>" in untrained
    # mask_results=False trains on the tool output too (one run from the content to <|im_end|>)
    unmasked = encode_demonstration(parse_demonstration(ARPO_ROW), tiny_tokenizer, mask_results=False)
    assert trained_runs(tiny_tokenizer, unmasked) == [ARPO_ROW["completion"] + "<|im_end|>"]


def test_prompt_assistant_turns_are_context(tiny_tokenizer: Any, trained_runs: TrainedRuns) -> None:
    row = {
        "prompt": [
            {"role": "user", "content": "1 + 1?"},
            {"role": "assistant", "content": "2"},
            {"role": "user", "content": "2 + 2?"},
        ],
        "completion": [{"role": "assistant", "content": "4"}],
    }
    sample = encode_demonstration(parse_demonstration(row), tiny_tokenizer)
    assert trained_runs(tiny_tokenizer, sample) == ["4<|im_end|>"]
    as_messages = {"messages": row["prompt"] + row["completion"]}
    both = encode_demonstration(parse_demonstration(as_messages), tiny_tokenizer)
    assert trained_runs(tiny_tokenizer, both) == ["2<|im_end|>", "4<|im_end|>"]
    assert both.token_ids.tolist() == sample.token_ids.tolist()


def test_sharegpt_function_call_and_observation(tiny_tokenizer: Any, trained_runs: TrainedRuns) -> None:
    row = {
        "conversations": [
            {"from": "human", "value": "6 * 7?"},
            {"from": "function_call", "value": '{"name": "python", "arguments": {"code": "6*7"}}'},
            {"from": "observation", "value": "42"},
            {"from": "gpt", "value": "42"},
        ],
        "tools": json.dumps([PYTHON_TOOL]),
    }
    sample = encode_demonstration(parse_demonstration(row), tiny_tokenizer)
    assert trained_runs(tiny_tokenizer, sample) == [
        '<tool_call>{"name": "python", "arguments": {"code": "6*7"}}</tool_call><|im_end|>',
        "42<|im_end|>",
    ]


def test_rendered_spans(tiny_tokenizer: Any) -> None:
    rendered = render_demonstration(parse_demonstration(ARPO_ROW), tiny_tokenizer)
    ((start, end),) = rendered.trained_spans
    assert rendered.text[:start].endswith("<|im_start|>assistant\n")
    assert rendered.text[start:end] == ARPO_ROW["completion"] + "<|im_end|>"
    assert rendered.text[end:] == "\n"
    assert [rendered.text[a:b] for a, b in rendered.result_spans] == [
        " <result>\n391\n</result>",
        " <result>\nParis is the capital of France.\n</result>",
    ]
    chars = rendered.trained_characters()
    assert "".join(c for c, t in zip(rendered.text, chars, strict=True) if t) == (
        "<python>print(17 * 23)</python>\n<search>Paris capital</search>\n<answer>\\boxed{391}</answer><|im_end|>"
    )


def test_pieces_are_tokenised_on_their_own_as_in_a_rollout(tiny_tokenizer: Any, trained_runs: TrainedRuns) -> None:
    # the tiny tokenizer merges "><" and ">\\" into one token each: whole-text tokenisation would glue the end of
    # "</python>" to the start of "<result>", and the end of "</result>" to the "\\boxed" the model writes next
    completion = "<python>print(5)</python><result>5</result>\\boxed{5}"
    demo = parse_demonstration({"prompt": "q", "completion": completion})
    assert concatenates_cleanly(tiny_tokenizer)
    samples, stats = tokenize_demonstrations([demo], tiny_tokenizer)
    assert stats.split_at_boundaries and stats.boundary_tokens == 0
    (sample,) = samples
    assert trained_runs(tiny_tokenizer, sample) == ["<python>print(5)</python>", "\\boxed{5}<|im_end|>"]
    prompt = tiny_tokenizer.apply_chat_template(
        [{"role": "user", "content": "q"}], tokenize=False, add_generation_prompt=True
    )
    pieces = [prompt, "<python>print(5)</python>", "<result>5</result>", "\\boxed{5}<|im_end|>", "\n"]
    assert sample.token_ids.tolist() == [i for p in pieces for i in _tokens_of(tiny_tokenizer, p)]
    assert sample.prompt_length == len(_tokens_of(tiny_tokenizer, prompt))
    assert stats.tool_output_tokens == len(_tokens_of(tiny_tokenizer, "<result>5</result>"))

    # whole-text tokenisation (what SentencePiece-style tokenizers get): the straddling tokens are left out
    samples, stats = tokenize_demonstrations([demo], tiny_tokenizer, split_at_boundaries=False)
    (whole,) = samples
    text = render_demonstration(demo, tiny_tokenizer).text
    assert whole.token_ids.tolist() == _tokens_of(tiny_tokenizer, text)
    assert trained_runs(tiny_tokenizer, whole) == ["<python>print(5)</python", "boxed{5}<|im_end|>"]
    assert stats.boundary_tokens == 2 and not stats.split_at_boundaries


def test_a_tokenizer_that_prepends_a_space_is_not_split(trained_runs: TrainedRuns) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    raw = Tokenizer(models.BPE(unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    raw.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    trainer = trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<unk>", "<|im_start|>", "<|im_end|>"], show_progress=False
    )
    corpus = ["<|im_start|>user\nWhat is 2 + 3? abcd\n<|im_end|>", "<python>print(2 + 3)</python> <result>5</result>"]
    raw.train_from_iterator(corpus * 20, trainer=trainer)
    sentencepiece_like = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=raw, eos_token="<|im_end|>", unk_token="<unk>"
    )
    sentencepiece_like.chat_template = CHATML_TEMPLATE
    assert not concatenates_cleanly(sentencepiece_like)
    demo = parse_demonstration(
        {"prompt": "What is 2 + 3?", "completion": "<python>print(2 + 3)</python> <result>5</result>"}
    )
    samples, stats = tokenize_demonstrations([demo], sentencepiece_like)
    assert not stats.split_at_boundaries
    text = render_demonstration(demo, sentencepiece_like).text
    assert samples[0].token_ids.tolist() == sentencepiece_like(text, add_special_tokens=False)["input_ids"]
    # "▁<" joins the header's newline to the content, so it is left out; the <result> span stays masked
    assert trained_runs(sentencepiece_like, samples[0]) == ["python>print(2 + 3)</python>", "<|im_end|>"]
    assert stats.boundary_tokens == 1 and stats.tool_output_tokens > 0


def test_truncation_drop_and_truncate_with_stats(tiny_tokenizer: Any) -> None:
    short = parse_demonstration({"prompt": "hi", "completion": "hello"}, index=0)
    long = parse_demonstration(ARPO_ROW, index=1)
    lengths = [encode_demonstration(d, tiny_tokenizer).length for d in (short, long)]
    full = encode_demonstration(long, tiny_tokenizer)
    limit = full.prompt_length + 3  # cuts the long row three tokens into its completion
    assert lengths[0] <= limit < lengths[1]

    kept, stats = tokenize_demonstrations([short, long], tiny_tokenizer, max_length=limit)
    assert [s.group_id for s in kept] == ["sft-0"]
    assert (stats.demonstrations, stats.samples, stats.dropped_too_long, stats.truncated) == (2, 1, 1, 0)
    assert stats.tokens == lengths[0] and stats.loss_tokens == kept[0].num_loss_tokens
    assert stats.tool_output_tokens == 0
    assert stats.summary().startswith(f"1 of 2 demonstrations kept, 1 longer than max_length={limit} dropped;")

    cut, stats = tokenize_demonstrations([short, long], tiny_tokenizer, max_length=limit, truncation="truncate")
    assert [s.length for s in cut] == [lengths[0], limit]
    assert (stats.samples, stats.dropped_too_long, stats.truncated, stats.dropped_no_loss) == (2, 0, 1, 0)
    assert cut[1].token_ids.tolist() == full.token_ids[:limit].tolist()
    assert cut[1].loss_mask.tolist() == full.loss_mask[:limit].tolist()

    # cut inside the prompt: no loss token left, so the row is dropped and counted
    tiny_limit = full.prompt_length - 1
    none_left, stats = tokenize_demonstrations([long], tiny_tokenizer, max_length=tiny_limit, truncation="truncate")
    assert none_left == [] and (stats.truncated, stats.dropped_no_loss, stats.samples) == (1, 1, 0)
    assert "1 with no loss token left dropped" in stats.summary()

    _, stats = tokenize_demonstrations([short, long], tiny_tokenizer)
    assert stats.samples == 2 and stats.tool_output_tokens > 0 and stats.max_length is None
    with pytest.raises(ValueError, match=r"max_length=0 must be ≥ 1"):
        tokenize_demonstrations([short], tiny_tokenizer, max_length=0)


def test_load_sft_samples_from_a_file(tiny_tokenizer: Any, tmp_path: Path) -> None:
    path = tmp_path / "demos.jsonl"
    path.write_text(json.dumps(ARPO_ROW) + "\n" + json.dumps(TOOL_CALL_ROW) + "\n", encoding="utf-8")
    samples, stats = load_sft_samples(path, tiny_tokenizer)
    assert [s.group_id for s in samples] == ["sft-0", "sft-1"] and stats.samples == 2


# A Qwen3-like template: earlier assistant turns lose their <think> block once a later turn follows.
DROPS_EARLIER_THINKING = (
    "{% for m in messages %}<|im_start|>{{ m.role }}\n"
    "{% if m.role == 'assistant' and not loop.last %}{{ m.content.split('</think>')[-1] }}"
    "{% else %}{{ m.content }}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
THINKING_ROW = {
    "messages": [
        {"role": "user", "content": "a?"},
        {"role": "assistant", "content": "<think>hmm</think>A"},
        {"role": "user", "content": "b?"},
        {"role": "assistant", "content": "<think>hmm</think>B"},
    ]
}


def test_a_template_that_rerenders_earlier_turns_is_refused(tiny_tokenizer: Any) -> None:
    demo = parse_demonstration(THINKING_ROW, where="demos.jsonl line 4")
    with pytest.raises(ChatTemplateError) as err:
        encode_demonstration(demo, tiny_tokenizer, chat_template=DROPS_EARLIER_THINKING)
    message = str(err.value)
    assert message.startswith("demos.jsonl line 4: the chat_template passed in breaks the prefix property at turn 1")
    assert "'<think>hmm</think>A<|im_end|>\\n'" in message  # what the prefix rendered
    assert message.endswith("renders earlier turns the same whatever follows.")
    # the tokenizer's own template is named by the model folder it came from
    tokenizer = _with_template(tiny_tokenizer, DROPS_EARLIER_THINKING)
    with pytest.raises(ChatTemplateError, match=r"the chat template of .*tiny-llama.* breaks the prefix property"):
        encode_demonstration(demo, tokenizer)
    # a single assistant turn has no earlier turn to re-render: fine with the same template
    single = parse_demonstration({"messages": THINKING_ROW["messages"][:2]})
    assert encode_demonstration(single, tiny_tokenizer, chat_template=DROPS_EARLIER_THINKING).num_loss_tokens > 0


def _with_template(tokenizer: Any, template: str | None) -> Any:
    import copy

    clone = copy.deepcopy(tokenizer)
    clone.chat_template = template
    return clone


def test_templates_that_lose_tool_calls_or_tools_are_refused(tiny_tokenizer: Any) -> None:
    plain_chatml = (  # SmolLM2-like: no tools, no tool_calls
        "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    demo = parse_demonstration(TOOL_CALL_ROW)
    with pytest.raises(ChatTemplateError, match=r"does not render the tool_calls of turn 2 \(no 'python' in the"):
        encode_demonstration(demo, tiny_tokenizer, chat_template=plain_chatml)
    no_calls = dict(TOOL_CALL_ROW, messages=[*TOOL_CALL_ROW["messages"][:2], {"role": "assistant", "content": "42"}])
    with pytest.raises(ChatTemplateError, match=r"does not render 'tools' \(no 'python' in the text\)"):
        encode_demonstration(parse_demonstration(no_calls), tiny_tokenizer, chat_template=plain_chatml)
    without_tools = {"messages": no_calls["messages"]}
    assert encode_demonstration(parse_demonstration(without_tools), tiny_tokenizer, chat_template=plain_chatml)


def test_missing_or_failing_template(tiny_tokenizer: Any) -> None:
    demo = parse_demonstration(ARPO_ROW, where="demos.jsonl line 1")
    with pytest.raises(ChatTemplateError, match=r"the chat template of .* is missing .*pass chat_template="):
        encode_demonstration(demo, _with_template(tiny_tokenizer, None))
    failing = "{{ raise_exception('roles must alternate') }}"
    with pytest.raises(
        ChatTemplateError, match=r"^demos.jsonl line 1: the chat_template passed in failed on the first"
    ):
        encode_demonstration(demo, tiny_tokenizer, chat_template=failing)
    # the built-in ChatML template passed explicitly gives the same rows as the tokenizer's own
    same = encode_demonstration(demo, tiny_tokenizer, chat_template=CHATML_TEMPLATE)
    assert same.token_ids.tolist() == encode_demonstration(demo, tiny_tokenizer).token_ids.tolist()
