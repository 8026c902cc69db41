"""Retokenisation drift: decode → re-encode changes some sampled sequences; the server returns the sampled ids.

A byte-level BPE model sampling freely produces token sequences that are not the tokenizer's own encoding of
their text (a merge split in two, a multi-byte character cut between tokens). Training on ``encode(text)`` would
then score ids the policy never sampled. The server's ``token_ids`` are the sampled ids: each one's logprob, as
returned, is what a direct forward pass over exactly those ids gives — which a server that re-encoded its text
could not satisfy, since the re-encoded ids differ.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

torch = pytest.importorskip("torch")
openai = pytest.importorskip("openai")
pytest.importorskip("fastapi")

from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

from arpo_backends.serve.testing import RunningServer, serve_in_thread  # noqa: E402


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    with serve_in_thread("tiny") as running:
        yield running


@pytest.mark.anyio
async def test_sampled_ids_survive_where_re_encoding_drifts(server: RunningServer) -> None:
    tokenizer: Any = AutoTokenizer.from_pretrained(server.folder)
    async with openai.AsyncOpenAI(base_url=server.base_url + "/v1", api_key="x", max_retries=0) as c:
        reply = await c.completions.create(
            model=server.model,
            prompt="café über naïve 12 * 34",
            max_tokens=24,
            n=8,
            seed=1,
            logprobs=0,
            extra_body={"return_token_ids": True, "ignore_eos": True, "skip_special_tokens": False},
        )
    drifted = [ch for ch in reply.choices if tokenizer.encode(ch.text, add_special_tokens=False) != ch.token_ids]
    assert drifted, "no sample drifted; sample more or longer"
    model = AutoModelForCausalLM.from_pretrained(server.folder, dtype=torch.float32).eval()
    for choice in drifted:
        ids = choice.prompt_token_ids + choice.token_ids
        with torch.no_grad():
            logprobs = model(torch.tensor([ids])).logits[0, len(choice.prompt_token_ids) - 1 : -1].log_softmax(-1)
        expected = logprobs.gather(-1, torch.tensor(choice.token_ids)[:, None])[:, 0]
        assert choice.logprobs.token_logprobs == pytest.approx(expected.tolist(), abs=1e-4)
        assert tokenizer.decode(choice.token_ids) == choice.text
        assert len(choice.logprobs.tokens) == len(choice.token_ids)
