"""/v1/chat/completions through the model's chat template, and /tokenize and /detokenize."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

openai = pytest.importorskip("openai")
pytest.importorskip("fastapi")

from transformers import AutoTokenizer  # noqa: E402

from arpo_backends.serve.testing import RunningServer, serve_in_thread  # noqa: E402

MESSAGES = [
    {"role": "system", "content": "You answer with tools."},
    {"role": "user", "content": "What is 12 * 34?"},
]
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "python",
            "description": "Run Python code.",
            "parameters": {"type": "object", "properties": {"code": {"type": "string"}}, "required": ["code"]},
        },
    }
]


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    with serve_in_thread("tiny") as running:
        yield running


@pytest.fixture(scope="module")
def tokenizer(server: RunningServer) -> Any:
    return AutoTokenizer.from_pretrained(server.folder)


def post(server: RunningServer, path: str, body: dict[str, Any]) -> Any:
    request = urllib.request.Request(
        server.base_url + path, data=json.dumps(body).encode(), headers={"content-type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as reply:
        return json.loads(reply.read())


@pytest.mark.anyio
async def test_chat_applies_the_template_and_returns_ids_and_logprobs(server: RunningServer, tokenizer: Any) -> None:
    async with openai.AsyncOpenAI(base_url=server.base_url + "/v1", api_key="x", max_retries=0) as c:
        reply = await c.chat.completions.create(
            model=server.model,
            messages=MESSAGES,
            max_tokens=12,
            seed=4,
            logprobs=True,
            top_logprobs=3,
            extra_body={"return_token_ids": True, "ignore_eos": True, "skip_special_tokens": False},
        )
    expected_prompt = tokenizer.apply_chat_template(MESSAGES, add_generation_prompt=True, tokenize=False)
    assert reply.prompt_token_ids == tokenizer.encode(expected_prompt, add_special_tokens=False)
    assert expected_prompt.endswith("<|im_start|>assistant\n")
    choice = reply.choices[0]
    assert choice.message.role == "assistant" and choice.finish_reason == "length"
    assert choice.message.content == tokenizer.decode(choice.token_ids) and len(choice.token_ids) == 12
    content = choice.logprobs.content
    assert len(content) == 12
    for item, token in zip(content, choice.token_ids, strict=True):
        assert item.token == tokenizer.decode([token])
        assert item.bytes == list(item.token.encode("utf-8"))
        assert len(item.top_logprobs) == 3
        values = [t.logprob for t in item.top_logprobs]
        assert values == sorted(values, reverse=True) and item.logprob <= values[0] + 1e-6
    assert reply.usage.prompt_tokens == len(reply.prompt_token_ids) and reply.usage.completion_tokens == 12


@pytest.mark.anyio
async def test_tools_reach_the_template(server: RunningServer) -> None:
    with_tools = post(server, "/tokenize", {"messages": MESSAGES, "tools": TOOLS})
    without = post(server, "/tokenize", {"messages": MESSAGES})
    assert with_tools["count"] > without["count"]
    async with openai.AsyncOpenAI(base_url=server.base_url + "/v1", api_key="x", max_retries=0) as c:
        reply = await c.chat.completions.create(
            model=server.model,
            messages=MESSAGES,
            tools=TOOLS,
            max_tokens=2,
            extra_body={"return_token_ids": True},
        )
    assert reply.prompt_token_ids == with_tools["tokens"]


@pytest.mark.anyio
async def test_tool_turns_render(server: RunningServer, tokenizer: Any) -> None:
    call = {"id": "c1", "type": "function", "function": {"name": "python", "arguments": '{"code": "print(408)"}'}}
    messages = [
        *MESSAGES,
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "c1", "content": "408"},
    ]
    reply = post(server, "/tokenize", {"messages": messages, "tools": TOOLS})
    text = tokenizer.decode(reply["tokens"])
    assert '<tool_call>{"name": "python", "arguments": {"code": "print(408)"}}</tool_call>' in text
    assert text.endswith("<|im_start|>tool\n408<|im_end|>\n<|im_start|>assistant\n")


def test_tokenize_detokenize_round_trip(server: RunningServer, tokenizer: Any) -> None:
    text = "<python>print(12 * 34)</python> café 日本語 😀"
    reply = post(server, "/tokenize", {"prompt": text, "return_token_strs": True})
    assert reply["tokens"] == tokenizer.encode(text)
    assert reply["count"] == len(reply["tokens"]) and reply["max_model_len"] == 2048
    assert reply["token_strs"] == tokenizer.convert_ids_to_tokens(reply["tokens"])
    assert post(server, "/detokenize", {"tokens": reply["tokens"]})["prompt"] == text


@pytest.mark.anyio
async def test_chat_continues_the_final_assistant_message_as_vllm(server: RunningServer, tokenizer: Any) -> None:
    """``continue_final_message``: the prompt ends inside the assistant's message (no end-of-turn token), which is
    how ``arpo eval --protocol tags-inline`` and ``arpo train``'s evaluations continue after a tool result."""
    partial = [*MESSAGES, {"role": "assistant", "content": "<python>print(12 * 34)</python> <result>\n408\n</result>"}]
    expected = tokenizer.apply_chat_template(partial, continue_final_message=True, tokenize=False)
    assert expected.endswith("</result>")
    async with openai.AsyncOpenAI(base_url=server.base_url + "/v1", api_key="x", max_retries=0) as c:
        reply = await c.chat.completions.create(
            model=server.model, messages=partial, max_tokens=4, temperature=0.0, logprobs=True,
            extra_body={"continue_final_message": True, "add_generation_prompt": False, "return_token_ids": True},
        )  # fmt: skip
    assert reply.prompt_token_ids == tokenizer.encode(expected, add_special_tokens=False)
    assert reply.usage.prompt_tokens == len(reply.prompt_token_ids) and reply.usage.completion_tokens == 4
