"""The CPU server's prefix cache: which prefix a prompt reuses, what the cache keeps and drops, that a cached
prefill samples what a full prefill samples, and that new weights or ``POST /reset_prefix_cache`` empty it.

Expected prefix lengths are counted by hand from the token lists built here, not read back from the cache.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("fastapi")

from arpo_backends.serve.engine import Engine, GenParams, Sequence  # noqa: E402
from arpo_backends.serve.loader import load_engine  # noqa: E402
from arpo_backends.serve.prefix import PrefixCache  # noqa: E402
from arpo_backends.serve.testing import RunningServer, serve_in_thread, wait_healthy  # noqa: E402


def kv_of(ids: list[int]) -> torch.Tensor:
    """A fake KV (1 layer, k and v, 1 head, len(ids) tokens, dim 1) whose values are the token ids themselves."""
    column = torch.tensor(ids, dtype=torch.float32).reshape(1, len(ids), 1)
    return torch.stack([column, -column]).unsqueeze(0)


A = list(range(100, 140))  # 40 tokens
B = list(range(100, 120)) + [7] * 20  # shares 20 tokens with A


def test_lookup_finds_the_longest_shared_prefix_but_never_the_whole_prompt() -> None:
    cache = PrefixCache(1000)
    cache.store(A, kv_of(A))
    cache.store(B, kv_of(B))
    hit = cache.lookup(list(range(100, 130)) + [9] * 5)  # 30 tokens shared with A, 20 with B
    assert hit is not None and hit.tokens == 30
    assert hit.kv[0, 0, 0, :, 0].tolist() == list(range(100, 130))
    assert hit.kv[0, 1, 0, :, 0].tolist() == [-float(t) for t in range(100, 130)]
    whole = cache.lookup(A)  # the last token is always run: its logits give the first sampled token
    assert whole is not None and whole.tokens == 39
    assert cache.lookup(list(range(100, 110)) + [1] * 30) is None  # 10 shared tokens: under the 16 minimum
    assert cache.lookup([1] * 50) is None
    assert (cache.lookups, cache.hits, cache.reused_tokens) == (4, 2, 30 + 39)


def test_an_entry_covered_by_a_longer_one_is_dropped_and_never_stored_twice() -> None:
    cache = PrefixCache(1000)
    cache.store(A[:20], kv_of(A[:20]))
    cache.store(A, kv_of(A))  # covers the first entry
    assert (len(cache), cache.tokens) == (1, 40)
    cache.store(A[:30], kv_of(A[:30]))  # already covered by A
    assert (len(cache), cache.tokens) == (1, 40)
    cache.store([1, 2, 3], kv_of([1, 2, 3]))  # under the minimum: not worth keeping
    assert len(cache) == 1


def test_the_least_recently_used_entry_goes_first_under_the_budget() -> None:
    first, second, third = [[k] * 20 for k in (1, 2, 3)]
    cache = PrefixCache(50)
    cache.store(first, kv_of(first))
    cache.store(second, kv_of(second))
    assert cache.lookup([*first, 5]) is not None  # first is now the most recently used
    cache.store(third, kv_of(third))  # 60 tokens > 50: the least recently used (second) goes
    assert cache.tokens == 40
    assert cache.lookup([*second, 5]) is None
    assert cache.lookup([*first, 5]) is not None and cache.lookup([*third, 5]) is not None


def test_bad_sizes_are_refused() -> None:
    with pytest.raises(ValueError, match="max_tokens=0 must be at least 1"):
        PrefixCache(0)
    with pytest.raises(ValueError, match="the KV holds 3 tokens, the ids 2"):
        PrefixCache(10).store([1, 2], kv_of([1, 2, 3]))
    with pytest.raises(ValueError, match="prefix_cache_tokens=-1 must be 0"):
        load_engine("tiny", prefix_cache_tokens=-1)


# ---------------------------------------------------------------------------------------------- the engine


@pytest.fixture(scope="module")
def engines() -> tuple[Engine, Engine]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield load_engine("tiny")[0], load_engine("tiny", prefix_cache_tokens=4096)[0]  # type: ignore[misc]
    torch.set_num_threads(threads)


def run(engine: Engine, prompt: list[int], max_tokens: int) -> Sequence:
    seq = Sequence(list(prompt), GenParams(max_tokens=max_tokens, temperature=0.0, ignore_eos=True, logprobs=1))
    engine.step([seq])
    while engine.active:
        engine.step([])
    return seq


PROMPT = [(7 * i) % 500 + 3 for i in range(30)]


def test_a_continuation_prefills_only_what_it_adds_and_samples_the_same(engines: tuple[Engine, Engine]) -> None:
    plain, cached = engines
    assert plain.prefix is None and cached.prefix is not None
    cached.reset_prefix_cache()
    first = run(cached, PROMPT, 10)
    assert run(plain, PROMPT, 10).output_ids == first.output_ids
    assert cached.prefix.hits == 0  # nothing cached yet
    # a turn after a tool result: the prompt, every sampled token, then the result's tokens
    turn = PROMPT + first.output_ids + [11, 12, 13, 14, 15, 16, 17, 18]
    again, reference = run(cached, turn, 12), run(plain, turn, 12)
    assert cached.prefix.hits == 1
    assert cached.prefix.reused_tokens == 30 + 10 - 1  # the last sampled token was never fed back
    assert again.output_ids == reference.output_ids
    torch.testing.assert_close(torch.tensor(again.logprobs), torch.tensor(reference.logprobs), atol=1e-4, rtol=0)
    # a branch from the middle of the first output: its whole prompt is cached, all but its last token is reused
    branch = PROMPT + first.output_ids[:5]
    before = cached.prefix.reused_tokens
    forked, reference = run(cached, branch, 6), run(plain, branch, 6)
    assert cached.prefix.reused_tokens - before == 30 + 5 - 1
    assert forked.output_ids == reference.output_ids


def test_new_weights_empty_the_cache(engines: tuple[Engine, Engine]) -> None:
    _, cached = engines
    run(cached, PROMPT, 4)
    assert cached.prefix is not None and cached.prefix.tokens > 0
    cached.weights_changed(cached.weight_version + 1)
    assert cached.prefix.tokens == 0 and len(cached.prefix) == 0


# ---------------------------------------------------------------------------------------------- over HTTP


def post(server: RunningServer, path: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(
        server.base_url + path, data=json.dumps(body).encode(), headers={"content-type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=60) as reply:
        return dict(json.loads(reply.read()))


def complete(server: RunningServer, prompt: list[int], max_tokens: int) -> list[int]:
    body = {"model": server.model, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0.0}
    reply = post(server, "/v1/completions", body | {"ignore_eos": True, "return_token_ids": True})
    return list(reply["choices"][0]["token_ids"])


def wait_for(server: RunningServer, key: str, value: int) -> dict[str, Any]:
    """``/health`` until ``key`` reads ``value``: the server applies a reset between two engine steps."""
    for _ in range(200):
        health = wait_healthy(server.base_url)
        if health[key] == value:
            return health
        time.sleep(0.02)  # polling an observable condition
    raise AssertionError(f"/health never showed {key}={value}: {health}")


@pytest.fixture
def server() -> Iterator[RunningServer]:
    with serve_in_thread("tiny", prefix_cache_tokens=4096) as running:
        yield running


def test_the_server_reports_hits_and_resets_on_request_and_on_new_weights(
    server: RunningServer, tmp_path: Path
) -> None:
    output = complete(server, PROMPT, 6)
    complete(server, PROMPT + output + [21, 22, 23], 4)
    health = wait_healthy(server.base_url)
    assert (health["prefix_cache_hits"], health["prefix_cache_reused_tokens"]) == (1, 30 + 6 - 1)
    assert health["prefix_cache_tokens"] > 0
    assert post(server, "/reset_prefix_cache", {}) == {"success": True}
    wait_for(server, "prefix_cache_tokens", 0)

    complete(server, PROMPT, 6)
    assert wait_healthy(server.base_url)["prefix_cache_tokens"] > 0
    server.engine.model.save_pretrained(tmp_path / "same")  # the same weights: still a new version, a new cache
    assert post(server, "/v1/load_weights", {"path": str(tmp_path / "same")})["weight_version"] == 1
    assert wait_healthy(server.base_url)["prefix_cache_tokens"] == 0


def test_a_server_without_a_cache_says_so() -> None:
    with serve_in_thread("tiny") as plain:
        assert post(plain, "/reset_prefix_cache", {}) == {"success": False}
        assert "prefix_cache_hits" not in wait_healthy(plain.base_url)
