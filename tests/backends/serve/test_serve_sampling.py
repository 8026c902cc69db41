"""One sampling step: temperature, top-k, top-p, bans, greedy, per-row generators, and the sampled frequencies."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from arpo_backends.serve.sampling import RowParams, sample_step  # noqa: E402


def row(seed: int = 0, **kwargs: float) -> RowParams:
    params = {"temperature": 1.0, "top_p": 1.0, "top_k": 0, "top_logprobs": 0, **kwargs}
    return RowParams(
        float(params["temperature"]),
        float(params["top_p"]),
        int(params["top_k"]),
        int(params["top_logprobs"]),
        torch.Generator().manual_seed(seed),
    )


LOGITS = torch.tensor([[2.0, 1.0, 0.5, 0.0, -1.0, -3.0]])


def test_logprobs_are_of_the_tempered_distribution() -> None:
    result = sample_step(LOGITS, [row(top_logprobs=6, temperature=0.5)])
    expected = torch.log_softmax(LOGITS[0] / 0.5, -1)
    token = result.token_ids[0]
    assert result.logprobs[0] == pytest.approx(float(expected[token]), abs=1e-6)
    assert [i for i, _ in result.top[0]] == [0, 1, 2, 3, 4, 5]
    assert [v for _, v in result.top[0]] == pytest.approx(expected.tolist(), abs=1e-6)


def test_top_k_masks_all_but_k() -> None:
    result = sample_step(LOGITS, [row(top_k=2, top_logprobs=4)])
    top = dict(result.top[0])
    kept = torch.log_softmax(LOGITS[0, :2], -1)
    assert top[0] == pytest.approx(float(kept[0])) and top[1] == pytest.approx(float(kept[1]))
    assert [i for i, _ in result.top[0][:2]] == [0, 1] and result.token_ids[0] in (0, 1)
    assert all(math.isinf(v) for _, v in result.top[0][2:])  # the masked rest (ties, in any order)


def test_top_p_keeps_the_smallest_nucleus() -> None:
    probs = torch.softmax(LOGITS[0], -1)  # ≈ 0.57, 0.21, 0.13, 0.08, ...
    result = sample_step(LOGITS, [row(top_p=float(probs[0] + probs[1]) - 0.01, top_logprobs=3)])
    assert [i for i, _ in result.top[0][:2]] == [0, 1]
    assert not math.isinf(result.top[0][1][1]) and math.isinf(result.top[0][2][1])  # two reach p; the rest is cut


def test_greedy_and_bans() -> None:
    assert sample_step(LOGITS, [row(temperature=0.0)]).token_ids == [0]
    banned = RowParams(0.0, 1.0, 0, 0, torch.Generator(), banned=(0,))
    assert sample_step(LOGITS, [banned]).token_ids == [1]


def test_a_rows_draw_depends_on_its_generator_only() -> None:
    logits = torch.randn(4, 50, generator=torch.Generator().manual_seed(1))
    alone = [sample_step(logits[i : i + 1], [row(seed=i)]).token_ids[0] for i in range(4)]
    together = sample_step(logits, [row(seed=i) for i in range(4)]).token_ids
    assert together == alone
    mixed = sample_step(logits, [row(seed=0), row(seed=1, temperature=0.0), row(seed=2, top_k=5), row(seed=3)])
    assert mixed.token_ids[0] == alone[0] and mixed.token_ids[3] == alone[3]


def test_sampled_frequencies_follow_the_distribution() -> None:
    generator_rows = [row(seed=s) for s in range(4000)]
    result = sample_step(LOGITS.expand(4000, -1), generator_rows)
    counts = torch.bincount(torch.tensor(result.token_ids), minlength=6).float() / 4000
    assert counts.tolist() == pytest.approx(torch.softmax(LOGITS[0], -1).tolist(), abs=0.03)
