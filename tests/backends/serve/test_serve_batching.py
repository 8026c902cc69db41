"""Concurrent requests are batched (they share decoding forwards) and give what they give one at a time."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anyio
import pytest

openai = pytest.importorskip("openai")
pytest.importorskip("fastapi")

from arpo_backends.serve.testing import RunningServer, serve_in_thread  # noqa: E402

PROMPTS = [
    "The capital of France is",
    "12 * 34 =",
    "<search>Ada Lovelace</search>",
    "café über naïve",
    "def f(x):",
    "Once upon a time, in a land far away, there lived",
    "x",
    "What is the answer?",
]


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    with serve_in_thread("tiny") as running:
        yield running


async def one(c: Any, server: RunningServer, index: int, max_tokens: int) -> Any:
    reply = await c.completions.create(
        model=server.model,
        prompt=PROMPTS[index],
        max_tokens=max_tokens,
        seed=100 + index,
        temperature=0.9,
        top_p=0.95,
        logprobs=3,
        extra_body={"return_token_ids": True, "ignore_eos": True, "top_k": 50},
    )
    return reply.choices[0]


@pytest.mark.anyio
async def test_concurrent_requests_share_forwards_and_match_sequential_ones(server: RunningServer) -> None:
    lengths = [24, 32, 16, 40, 8, 32, 24, 12]  # each sequence stops on its own
    async with openai.AsyncOpenAI(base_url=server.base_url + "/v1", api_key="x", max_retries=0) as c:
        sequential = [await one(c, server, i, n) for i, n in enumerate(lengths)]

        before = server.get("/health")
        concurrent: list[Any] = [None] * len(PROMPTS)

        async def run(i: int) -> None:
            concurrent[i] = await one(c, server, i, lengths[i])

        async with anyio.create_task_group() as tg:
            for i in range(len(PROMPTS)):
                tg.start_soon(run, i)
        after = server.get("/health")

    for seq, con, n in zip(sequential, concurrent, lengths, strict=True):
        assert con.token_ids == seq.token_ids and len(con.token_ids) == n
        assert con.logprobs.token_logprobs == pytest.approx(seq.logprobs.token_logprobs, abs=1e-4)
    steps = after["decode_steps"] - before["decode_steps"]
    tokens = after["decoded_tokens"] - before["decoded_tokens"]
    assert tokens == sum(lengths) - len(lengths)  # the first token of each comes from its prefill
    assert steps <= max(lengths) + len(lengths), f"{steps} forwards for {tokens} tokens: requests were serialised"


@pytest.mark.anyio
async def test_a_client_that_disconnects_aborts_its_sequence(server: RunningServer) -> None:
    before = server.get("/health")["decoded_tokens"]
    async with openai.AsyncOpenAI(base_url=server.base_url + "/v1", api_key="x", max_retries=0, timeout=0.5) as c:
        with pytest.raises(openai.APITimeoutError):
            await c.completions.create(
                model=server.model, prompt=PROMPTS[0], max_tokens=2000, extra_body={"ignore_eos": True}
            )
    with anyio.fail_after(10):
        while (health := server.get("/health"))["running"]:  # noqa: ASYNC110 (polls the server's state)
            await anyio.sleep(0.01)
    assert health["decoded_tokens"] - before < 1999  # dropped mid-way, not generated to the end
