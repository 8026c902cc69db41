"""Buckets of bounded bytes and Hugging Face names; every expected value below is worked out by hand."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

torch = pytest.importorskip("torch")

from arpo_backends.publish import hf_name, iter_buckets, tensor_nbytes  # noqa: E402
from arpo_backends.publish.buckets import prepare_bucket  # noqa: E402


def named() -> list[tuple[str, torch.Tensor]]:
    return [
        ("a", torch.zeros(2, 3, dtype=torch.float32)),  # 6 x 4 = 24 bytes
        ("b", torch.zeros(4, dtype=torch.bfloat16)),  # 4 x 2 = 8 bytes
        ("c", torch.zeros(10, dtype=torch.float32)),  # 10 x 4 = 40 bytes
        ("d", torch.zeros(1, dtype=torch.int64)),  # 1 x 8 = 8 bytes
        ("e", torch.zeros(3, dtype=torch.float16)),  # 3 x 2 = 6 bytes
    ]


def names(buckets: list[list[tuple[str, torch.Tensor]]]) -> list[list[str]]:
    return [[name for name, _ in bucket] for bucket in buckets]


def test_tensor_nbytes_counts_elements_times_element_size() -> None:
    assert [tensor_nbytes(t) for _, t in named()] == [24, 8, 40, 8, 6]
    assert tensor_nbytes(torch.empty(2, 3, device="meta")) == 24  # planning before gathering
    assert tensor_nbytes(torch.zeros(8, 8)[:, :2]) == 64  # a view: its elements, not the storage's 256


def test_buckets_fill_up_to_the_limit_and_a_large_tensor_goes_alone() -> None:
    # 32 bytes: a+b = 24+8 = 32 fits exactly; c = 40 > 32 goes alone; d+e = 8+6 = 14.
    buckets = list(iter_buckets(named(), bucket_bytes=32))
    assert names(buckets) == [["a", "b"], ["c"], ["d", "e"]]
    assert [sum(tensor_nbytes(t) for _, t in b) for b in buckets] == [32, 40, 14]
    # 31 bytes: a=24, a+b=32 > 31 so b starts a bucket; b+c=48 > 31; c alone; d+e=14.
    assert names(list(iter_buckets(named(), bucket_bytes=31))) == [["a"], ["b"], ["c"], ["d", "e"]]
    # 48 bytes: a+b=32, +c=72 > 48; c+d=48 fits; +e=54 > 48.
    assert names(list(iter_buckets(named(), bucket_bytes=48))) == [["a", "b"], ["c", "d"], ["e"]]
    assert names(list(iter_buckets(named(), bucket_bytes=1))) == [["a"], ["b"], ["c"], ["d"], ["e"]]
    assert names(list(iter_buckets(named(), bucket_bytes=86))) == [["a", "b", "c", "d", "e"]]  # 86 = total
    assert list(iter_buckets([], bucket_bytes=10)) == []


def test_buckets_are_built_lazily() -> None:
    pulled: list[str] = []

    def gather() -> Iterator[tuple[str, torch.Tensor]]:
        for name, tensor in named():
            pulled.append(name)
            yield name, tensor

    buckets = iter_buckets(gather(), bucket_bytes=32)
    assert pulled == []
    assert [n for n, _ in next(buckets)] == ["a", "b"]
    assert pulled == ["a", "b", "c"]  # c was pulled to learn that it does not fit


def test_bucket_bytes_must_be_positive() -> None:
    with pytest.raises(ValueError, match="bucket_bytes=0"):
        list(iter_buckets(named(), bucket_bytes=0))


@pytest.mark.parametrize(
    ("wrapped", "expected"),
    [
        ("model.layers.0.mlp.up_proj.weight", "model.layers.0.mlp.up_proj.weight"),
        ("module.model.norm.weight", "model.norm.weight"),
        ("_orig_mod.lm_head.weight", "lm_head.weight"),
        ("module._orig_mod.model.embed_tokens.weight", "model.embed_tokens.weight"),
        (
            "model.layers.3._fsdp_wrapped_module._checkpoint_wrapped_module.self_attn.q_proj.weight",
            "model.layers.3.self_attn.q_proj.weight",
        ),
        ("model.layers.0._orig_mod.mlp.down_proj.bias", "model.layers.0.mlp.down_proj.bias"),
        ("model.submodule.weight", "model.submodule.weight"),  # only whole components are wrappers
        ("model.module.weight", "model.module.weight"),  # ``module`` is a wrapper only in front
        ("module", "module"),
    ],
)
def test_hf_name(wrapped: str, expected: str) -> None:
    assert hf_name(wrapped) == expected
    assert hf_name(expected) == expected


def test_prepare_bucket_renames_and_refuses_a_name_twice() -> None:
    seen: set[str] = set()
    weight = torch.ones(2, 2, requires_grad=True)
    out = prepare_bucket([("module.x", weight), ("y", torch.zeros(4, 4).t())], seen)
    assert [n for n, _ in out] == ["x", "y"]
    assert not out[0][1].requires_grad and out[1][1].is_contiguous()
    with pytest.raises(ValueError, match=r"'x' twice \(as '_orig_mod.x'\)"):
        prepare_bucket([("_orig_mod.x", torch.zeros(1))], seen)
