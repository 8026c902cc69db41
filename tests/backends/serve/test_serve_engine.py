"""The engine without HTTP: packed prefill, the preallocated batch cache under joins and leaves, stop strings in
long outputs, sampling without logprobs, and the per-step thread choice."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")

from transformers.cache_utils import DynamicCache  # noqa: E402

from arpo_backends.serve import kv  # noqa: E402
from arpo_backends.serve.engine import Engine, GenParams, Sequence  # noqa: E402
from arpo_backends.serve.loader import load_engine  # noqa: E402
from arpo_backends.serve.packed import packed_prefill, supports_packed  # noqa: E402
from arpo_backends.serve.sampling import RowParams, sample_step  # noqa: E402
from arpo_backends.serve.threads import AutoThreads, FixedThreads  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def engine() -> Engine:
    return load_engine("tiny")[0]


@pytest.fixture(scope="module")
def packing_engine() -> Engine:
    return load_engine("tiny", prefill_tokens=64)[0]


def prompt(n: int, salt: int) -> list[int]:
    return [(salt * 31 + 7 * i) % 500 + 3 for i in range(n)]


def run_alone(engine: Engine, seq: Sequence) -> Sequence:
    engine.step([seq])
    while engine.active:
        engine.step([])
    return seq


def fresh(seq: Sequence) -> Sequence:
    return Sequence(list(seq.prompt_ids), seq.params, choice_index=seq.choice_index)


def test_packed_prefill_is_bit_identical_to_one_prompt_at_a_time(engine: Engine) -> None:
    """With one thread and prompts of ≥ 16 tokens (the engine prefills shorter ones alone)."""
    model = engine.model
    assert supports_packed(model)
    prompts = [prompt(16, 1), prompt(17, 2), prompt(64, 3), prompt(33, 4)]
    with torch.inference_mode():
        cache, logits = packed_prefill(model, prompts, engine._cache_kwarg)
        offset = 0
        for i, ids in enumerate(prompts):
            alone = DynamicCache(config=model.config)
            out = model(input_ids=torch.tensor([ids]), use_cache=True, logits_to_keep=1, **{engine._cache_kwarg: alone})
            assert torch.equal(logits[i], out.logits[0, -1])
            for packed_layer, layer in zip(cache.layers, alone.layers, strict=True):
                assert torch.equal(packed_layer.keys[0, :, offset : offset + len(ids)], layer.keys[0])
                assert torch.equal(packed_layer.values[0, :, offset : offset + len(ids)], layer.values[0])
            offset += len(ids)


@pytest.fixture
def tight_buffers(monkeypatch: pytest.MonkeyPatch) -> None:
    """No slack in the batch buffers: every join and most steps reallocate."""
    monkeypatch.setattr(kv, "_LEFT_SLACK", 0)
    monkeypatch.setattr(kv, "_RIGHT_SLACK", 1)


@pytest.mark.usefixtures("tight_buffers")
@pytest.mark.parametrize("packing", [False, True])
def test_rows_joining_and_leaving_give_what_each_gives_alone(
    engine: Engine, packing_engine: Engine, packing: bool
) -> None:
    if packing:
        engine = packing_engine

    def params(i: int, max_tokens: int) -> GenParams:
        return GenParams(
            max_tokens=max_tokens, temperature=0.8, top_k=40 if i % 2 else 0, top_p=0.9 if i % 3 == 0 else 1.0,
            seed=10 + i, logprobs=2, ignore_eos=True,
        )  # fmt: skip

    # (step it arrives at, prompt length, max_tokens, n): later prompts are longer (the batch grows to the left),
    # lengths differ (rows finish at different steps, the last rows move into the holes)
    # prompts of ≥ 16 tokens arriving together are packed by ``packing_engine`` (64 tokens per forward at most)
    plan = [
        (0, 16, 12, 1), (0, 3, 5, 2), (0, 18, 7, 1), (2, 20, 9, 1), (4, 2, 14, 1), (4, 40, 6, 3), (4, 25, 10, 1),
        (4, 30, 4, 1), (9, 11, 3, 1), (15, 4, 4, 1),
    ]  # fmt: skip
    arrivals: dict[int, list[Sequence]] = {}
    seqs: list[Sequence] = []
    for i, (at, length, max_tokens, n) in enumerate(plan):
        group = [Sequence(prompt(length, i), params(i, max_tokens), choice_index=j) for j in range(n)]
        arrivals.setdefault(at, []).extend(group)
        seqs += group
    cancelled = seqs[-2]  # cancelled after arriving: dropped at the next step
    step = 0
    finished: list[Sequence] = []
    while step <= max(arrivals) or engine.active:
        if step == 10:
            cancelled.cancelled = True
        finished += engine.step(arrivals.get(step, []))
        step += 1
    assert engine.batch.rows == 0
    assert set(finished) == set(seqs)
    for seq in seqs:
        if seq is cancelled:
            assert seq.finish_reason is None
            continue
        alone = run_alone(engine, fresh(seq))
        assert seq.output_ids == alone.output_ids
        assert seq.logprobs == pytest.approx(alone.logprobs, abs=1e-4)
        assert len(seq.output_ids) == seq.params.max_tokens


def test_stop_strings_late_in_long_outputs_and_before_min_tokens(engine: Engine) -> None:
    base = GenParams(max_tokens=160, temperature=1.0, seed=3, ignore_eos=True, skip_special_tokens=False)
    free = run_alone(engine, Sequence(prompt(8, 9), base))
    detok = engine._detokenizer

    def text(ids: list[int]) -> str:
        return str(detok.decode(ids, skip_special_tokens=False))

    full = text(free.output_ids)
    # a stop completed late: only the tail is decoded each step, the hit is confirmed on the whole text
    late = next(full[i : i + 4] for i in range(len(full) * 3 // 4, len(full) - 4) if "\ufffd" not in full[i : i + 4])
    at = full.find(late)
    stopped = run_alone(engine, Sequence(prompt(8, 9), dataclasses.replace(base, stop=(late,))))
    assert stopped.finish_reason == "stop" and stopped.stop_reason == late
    assert stopped.text == full[:at]
    assert stopped.output_ids == free.output_ids[: len(stopped.output_ids)]
    assert late in text(stopped.output_ids) and late not in text(stopped.output_ids[:-1])

    # a stop that appears before min_tokens is found at the first check, anywhere in the text (as vLLM)
    early = next(full[i : i + 3] for i in range(2, 40) if "\ufffd" not in full[i : i + 3])
    min_tokens = 120
    assert text(free.output_ids[:min_tokens]).find(early) >= 0
    held = run_alone(engine, Sequence(prompt(8, 9), dataclasses.replace(base, stop=(early,), min_tokens=min_tokens)))
    assert held.finish_reason == "stop"
    assert len(held.output_ids) == min_tokens + 1
    first = text(free.output_ids[: min_tokens + 1])
    assert held.text == first[: first.find(early)]


def test_sampling_without_logprobs_draws_the_same_tokens() -> None:
    logits = torch.randn(6, 300, generator=torch.Generator().manual_seed(0))

    def rows(logprob: bool) -> list[RowParams]:
        return [
            RowParams(t, p, k, 0, torch.Generator().manual_seed(s), logprob=logprob)
            for s, (t, p, k) in enumerate([(1.0, 1.0, 0), (0.7, 1.0, 0), (0.0, 1.0, 0), (1.0, 0.9, 0), (1.0, 1.0, 5)])
        ] + [RowParams(1.3, 0.8, 20, 0, torch.Generator().manual_seed(9), logprob=logprob)]

    with_logprobs = sample_step(logits, rows(True))
    without = sample_step(logits, rows(False))
    assert without.token_ids == with_logprobs.token_ids
    assert without.logprobs == [0.0] * 6
    before = logits.clone()
    sample_step(logits, rows(False))
    assert torch.equal(logits, before)  # filters never touch the caller's logits


def test_auto_threads_follow_the_other_runnable_threads(tmp_path: Path) -> None:
    stat = tmp_path / "stat"

    def running(n: int) -> None:
        stat.write_text(f"cpu  1 2 3 4\nprocs_running {n}\nprocs_blocked 0\n")

    threads = AutoThreads(2, stat=str(stat))
    running(1)  # only the engine's own thread
    assert [threads() for _ in range(3)] == [2, 2, 2]
    running(2)  # another thread keeps a core busy
    assert threads() == 2  # smoothed: one busy sample is not enough
    assert [threads() for _ in range(5)][-1] == 1
    running(1)
    assert [threads() for _ in range(8)][-1] == 2
    assert AutoThreads(2, stat=str(tmp_path / "missing"))() == 2  # no /proc/stat: all cores
    assert FixedThreads(3)() == 3


def test_the_engine_sets_its_threads_in_its_own_thread(engine: Engine) -> None:
    before = torch.get_num_threads()
    calls: list[Any] = []

    def policy() -> int:
        calls.append(1)
        return 1

    engine.threads = policy
    try:
        run_alone(engine, Sequence(prompt(4, 1), GenParams(max_tokens=3, temperature=0.0)))
    finally:
        engine.threads = None
    assert len(calls) == 3 and torch.get_num_threads() == 1
    torch.set_num_threads(before)


def test_threads_option() -> None:
    from arpo_backends.serve.cli import parse_threads

    assert parse_threads(None) is None
    assert parse_threads("auto") == "auto"
    assert parse_threads("2") == 2
    for bad in ("0", "many"):
        with pytest.raises(ValueError, match="--threads"):
            parse_threads(bad)
