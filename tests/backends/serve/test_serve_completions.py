"""/v1/completions of the CPU server over real HTTP with the real openai client, against a tiny random model.

The logprobs are checked against a second method: one direct forward pass of the same weights over
prompt + completion, with the same temperature / top-k / top-p applied by an independent implementation.
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

PROMPT = "What is 12 * 34? <python>print(12 * 34)</python>"


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    with serve_in_thread("tiny") as running:
        yield running


@pytest.fixture(scope="module")
def reference(server: RunningServer) -> Any:
    """The same weights loaded a second time, for direct forward passes."""
    return AutoModelForCausalLM.from_pretrained(server.folder, dtype=torch.float32).eval()


@pytest.fixture(scope="module")
def tokenizer(server: RunningServer) -> Any:
    return AutoTokenizer.from_pretrained(server.folder)


def client(server: RunningServer) -> Any:
    return openai.AsyncOpenAI(base_url=server.base_url + "/v1", api_key="x", max_retries=0, timeout=60)


def processed_logprobs(model: Any, prompt: list[int], output: list[int], temperature: float, top_k: int, top_p: float):
    """(len(output), V) log-probabilities of the distribution each output token was drawn from."""
    ids = torch.tensor([prompt + output])
    with torch.no_grad():
        logits = model(ids).logits[0, len(prompt) - 1 : -1].float()  # (L, V): position t predicts token t + 1
    z = logits / (temperature if temperature > 0 else 1.0)
    if top_k > 0:
        kth = z.sort(dim=-1, descending=True).values[:, top_k - 1 : top_k]
        z = torch.where(z < kth, float("-inf"), z)
    if top_p < 1.0:
        rows = []
        for row in z:
            order = row.argsort(descending=True)
            probs = row[order].softmax(-1)
            keep = order[(probs.cumsum(-1) - probs) < top_p]
            masked = torch.full_like(row, float("-inf"))
            masked[keep] = row[keep]
            rows.append(masked)
        z = torch.stack(rows)
    return z.log_softmax(-1)


async def complete(server: RunningServer, **kwargs: Any) -> Any:
    extra = kwargs.pop("extra_body", {})
    async with client(server) as c:
        return await c.completions.create(model=server.model, extra_body={"return_token_ids": True, **extra}, **kwargs)


@pytest.mark.anyio
async def test_token_ids_decode_to_text_and_prompt_ids_are_the_encoding(server: RunningServer, tokenizer: Any) -> None:
    reply = await complete(
        server,
        prompt=PROMPT,
        max_tokens=24,
        seed=3,
        extra_body={"ignore_eos": True, "skip_special_tokens": False},
    )
    choice = reply.choices[0]
    assert len(choice.token_ids) == 24 and choice.finish_reason == "length" and choice.stop_reason is None
    assert tokenizer.decode(choice.token_ids) == choice.text
    assert choice.prompt_token_ids == tokenizer.encode(PROMPT)
    assert reply.usage.prompt_tokens == len(choice.prompt_token_ids) and reply.usage.completion_tokens == 24
    assert reply.object == "text_completion" and reply.model == server.model


@pytest.mark.anyio
@pytest.mark.parametrize(("temperature", "top_k", "top_p"), [(0.7, 0, 1.0), (1.3, 8, 1.0), (1.0, 0, 0.8)])
async def test_logprobs_are_the_processed_distribution_of_a_direct_forward_pass(
    server: RunningServer, reference: Any, temperature: float, top_k: int, top_p: float
) -> None:
    k = 5
    reply = await complete(
        server,
        prompt=PROMPT,
        max_tokens=16,
        seed=11,
        temperature=temperature,
        top_p=top_p,
        logprobs=k,
        extra_body={"top_k": top_k, "ignore_eos": True, "return_tokens_as_token_ids": True},
    )
    choice = reply.choices[0]
    lp = choice.logprobs
    assert lp.tokens == [f"token_id:{t}" for t in choice.token_ids]
    assert len(lp.token_logprobs) == len(lp.top_logprobs) == len(lp.text_offset) == len(choice.token_ids) == 16
    expected = processed_logprobs(reference, choice.prompt_token_ids, choice.token_ids, temperature, top_k, top_p)
    for pos, token in enumerate(choice.token_ids):
        row = expected[pos].clamp(min=-9999.0)
        assert lp.token_logprobs[pos] == pytest.approx(float(row[token]), abs=1e-4)
        top = lp.top_logprobs[pos]
        assert len(top) in (k, k + 1)  # vLLM: the sampled token, then the top k
        assert next(iter(top)) == f"token_id:{token}"
        for key, value in top.items():
            assert value == pytest.approx(float(row[int(key.split(":")[1])]), abs=1e-4)
        best = row.topk(k).values
        assert sorted(top.values(), reverse=True)[:k] == pytest.approx(best.tolist(), abs=1e-4)


@pytest.mark.anyio
async def test_greedy_follows_the_argmax_of_a_full_forward_pass(server: RunningServer, reference: Any) -> None:
    reply = await complete(server, prompt=PROMPT, max_tokens=12, temperature=0, extra_body={"ignore_eos": True})
    ids = list(reply.choices[0].prompt_token_ids)
    for token in reply.choices[0].token_ids:
        with torch.no_grad():
            assert int(reference(torch.tensor([ids])).logits[0, -1].argmax()) == token
        ids.append(token)


@pytest.mark.anyio
async def test_a_seed_reproduces_the_sample_and_another_seed_does_not(server: RunningServer) -> None:
    kwargs: dict[str, Any] = {"prompt": PROMPT, "max_tokens": 20, "logprobs": 2, "extra_body": {"ignore_eos": True}}
    first = await complete(server, seed=1234, **kwargs)
    again = await complete(server, seed=1234, **kwargs)
    other = await complete(server, seed=4321, **kwargs)
    assert first.choices[0].token_ids == again.choices[0].token_ids
    assert first.choices[0].logprobs.token_logprobs == again.choices[0].logprobs.token_logprobs
    assert first.choices[0].token_ids != other.choices[0].token_ids


@pytest.mark.anyio
async def test_a_token_id_prompt_gives_what_its_text_gives(server: RunningServer, tokenizer: Any) -> None:
    common: dict[str, Any] = {"max_tokens": 10, "seed": 5, "extra_body": {"ignore_eos": True}}
    by_text = await complete(server, prompt=PROMPT, **common)
    by_ids = await complete(server, prompt=tokenizer.encode(PROMPT), **common)
    assert by_ids.choices[0].prompt_token_ids == by_text.choices[0].prompt_token_ids
    assert by_ids.choices[0].token_ids == by_text.choices[0].token_ids


@pytest.mark.anyio
async def test_a_batch_of_prompts_with_n_choices(server: RunningServer, tokenizer: Any) -> None:
    a, b = tokenizer.encode("first prompt"), tokenizer.encode("a second, longer prompt")
    common: dict[str, Any] = {"max_tokens": 6, "seed": 9, "extra_body": {"ignore_eos": True}}
    batch = await complete(server, prompt=[a, b], n=2, **common)
    assert [c.index for c in batch.choices] == [0, 1, 2, 3]
    assert [c.prompt_token_ids for c in batch.choices] == [a, a, b, b]
    assert batch.usage.prompt_tokens == len(a) + len(b) and batch.usage.completion_tokens == 24
    single = await complete(server, prompt=a, n=1, **common)
    assert batch.choices[0].token_ids == single.choices[0].token_ids  # choice 0 uses the seed itself
    assert batch.choices[0].token_ids != batch.choices[1].token_ids  # choice 1 has its own stream


@pytest.mark.anyio
@pytest.mark.parametrize("max_tokens", [1, 7])
async def test_max_tokens_is_respected(server: RunningServer, max_tokens: int) -> None:
    capped = await complete(server, prompt=PROMPT, max_tokens=max_tokens, seed=2, extra_body={"ignore_eos": True})
    assert len(capped.choices[0].token_ids) == max_tokens and capped.choices[0].finish_reason == "length"
    free = await complete(server, prompt=PROMPT, max_tokens=max_tokens, seed=2)
    assert len(free.choices[0].token_ids) <= max_tokens


@pytest.mark.anyio
async def test_models_and_health_report_the_weight_version(server: RunningServer) -> None:
    async with client(server) as c:
        models = await c.models.list()
    card = models.data[0]
    assert card.id == server.model and card.max_model_len == 2048 and card.weight_version == 0
    health = server.get("/health")
    assert health["status"] == "ok" and health["weight_version"] == 0
