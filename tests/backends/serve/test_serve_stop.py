"""Stop strings and stop token ids, with and without ``include_stop_str_in_output``, as vLLM does them.

vLLM's semantics: ``token_ids`` (and logprobs) keep every sampled token, the ones that completed the stop string
or the stop token included; only ``text`` is cut, before the stop string (or after it when it is included).
Each case first samples without stopping, then replays the same seed with a stop taken from that sample.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

openai = pytest.importorskip("openai")
pytest.importorskip("fastapi")

from transformers import AutoTokenizer  # noqa: E402

from arpo_backends.serve.testing import RunningServer, serve_in_thread  # noqa: E402

PROMPT = "<search>capital of France</search><result>"


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    with serve_in_thread("tiny") as running:
        yield running


@pytest.fixture(scope="module")
def tokenizer(server: RunningServer) -> Any:
    return AutoTokenizer.from_pretrained(server.folder)


async def complete(server: RunningServer, **extra: Any) -> Any:
    async with openai.AsyncOpenAI(base_url=server.base_url + "/v1", api_key="x", max_retries=0) as c:
        reply = await c.completions.create(
            model=server.model,
            prompt=PROMPT,
            max_tokens=40,
            seed=77,
            logprobs=1,
            extra_body={"return_token_ids": True, "ignore_eos": True, "skip_special_tokens": False, **extra},
        )
    return reply.choices[0]


def pick_stop(text: str) -> str:
    """Three characters from the middle of ``text`` with no replacement character (a partly decoded byte)."""
    for start in range(len(text) // 3, len(text) - 3):
        candidate = text[start : start + 3]
        if "\ufffd" not in candidate:
            return candidate
    raise AssertionError(f"no clean 3-character window in {text!r}")


@pytest.mark.anyio
@pytest.mark.parametrize("include", [False, True])
async def test_stop_string_cuts_the_text_but_keeps_the_sampled_ids(
    server: RunningServer, tokenizer: Any, include: bool
) -> None:
    free = await complete(server)
    stop = pick_stop(free.text)
    at = free.text.find(stop)
    stopped = await complete(server, stop=[stop, "this never occurs \x00"], include_stop_str_in_output=include)
    assert stopped.finish_reason == "stop" and stopped.stop_reason == stop
    assert stopped.text == (free.text[: at + len(stop)] if include else free.text[:at])
    ids = stopped.token_ids
    assert ids == free.token_ids[: len(ids)]  # the same samples up to the stop, then nothing more
    assert stop in tokenizer.decode(ids) and stop not in tokenizer.decode(ids[:-1])  # the last id completed it
    assert len(stopped.logprobs.token_logprobs) == len(ids)


@pytest.mark.anyio
@pytest.mark.parametrize("include", [False, True])
async def test_stop_token_id(server: RunningServer, tokenizer: Any, include: bool) -> None:
    free = await complete(server)
    token = free.token_ids[len(free.token_ids) // 2]
    at = free.token_ids.index(token)
    stopped = await complete(server, stop_token_ids=[token], include_stop_str_in_output=include)
    assert stopped.finish_reason == "stop" and stopped.stop_reason == token
    assert stopped.token_ids == free.token_ids[: at + 1]
    assert stopped.text == tokenizer.decode(free.token_ids[: at + 1] if include else free.token_ids[:at])


@pytest.mark.anyio
async def test_min_tokens_holds_back_a_stop_token(server: RunningServer) -> None:
    free = await complete(server)
    token = free.token_ids[2]
    stopped = await complete(server, stop_token_ids=[token], min_tokens=10)
    assert len(stopped.token_ids) >= 10 and token not in stopped.token_ids[:9]


@pytest.mark.anyio
async def test_eos_stops_unless_ignored(server: RunningServer, tokenizer: Any) -> None:
    eos = tokenizer.eos_token_id
    request: dict[str, Any] = {"model": server.model, "prompt": PROMPT, "max_tokens": 64, "seed": 5, "n": 24}
    async with openai.AsyncOpenAI(base_url=server.base_url + "/v1", api_key="x", max_retries=0) as c:
        free = await c.completions.create(**request, extra_body={"return_token_ids": True, "ignore_eos": True})
        stopped = await c.completions.create(**request, extra_body={"return_token_ids": True})
    with_eos = [(f, s) for f, s in zip(free.choices, stopped.choices, strict=True) if eos in f.token_ids]
    assert with_eos, "no sample of the tiny model emitted EOS; pick another seed"
    for ignored, choice in with_eos:
        ids = ignored.token_ids
        assert choice.token_ids == ids[: ids.index(eos) + 1]  # EOS is the last sampled id, and is returned
        assert choice.finish_reason == "stop" and choice.stop_reason is None
        assert "<|im_end|>" not in choice.text
