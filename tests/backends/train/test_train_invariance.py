"""Both backends, one or two ranks, any micro-batch split: the same losses step by step and the same weights.

The reference is one process with one micro-batch per update; every other run must match it within fp32
rounding (the only differences are the order of float sums in all-reduce and matmuls of other shapes).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from tests.backends.train.conftest import Run, launch

pytestmark = pytest.mark.slow

BASE: dict[str, Any] = {"model": "tiny", "optim": {"lr": 1e-3}, "micro_batch_tokens": 4096}
STEPS = 3


def _spec(**config: Any) -> dict[str, Any]:
    return {"config": {**BASE, **config}, "steps": STEPS}


def _assert_same(run: Run, ref: Run) -> None:
    got, want = run.metrics, ref.metrics
    assert [m["step"] for m in got] == list(range(STEPS))
    for a, b in zip(got, want, strict=True):
        for key in ("loss", "pg_loss", "grad_norm", "loss_tokens", "importance_weight_mean"):
            assert a[key] == pytest.approx(b[key], rel=1e-4, abs=1e-6), (key, a["step"])
    w, v = run.weights, ref.weights
    assert set(w) == set(v)
    for name in v:
        assert w[name] == pytest.approx(v[name], rel=1e-4, abs=1e-4), name


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Run:
    return launch(tmp_path_factory.mktemp("ref"), "single", _spec(backend="fsdp"))


def test_reference_learns(reference: Run) -> None:
    """A sanity check that the runs compared below do update the weights (else "equal" would be vacuous)."""
    losses = [m["loss"] for m in reference.metrics]
    assert all(m["updates"] == 1 for m in reference.metrics)
    assert losses[0] != losses[1]


@pytest.mark.parametrize(
    ("name", "nproc", "config"),
    [
        ("fsdp-1x8-micro", 1, {"backend": "fsdp", "micro_batch_tokens": 48}),
        ("fsdp-2ranks", 2, {"backend": "fsdp"}),
        ("fsdp-2ranks-micro", 2, {"backend": "fsdp", "micro_batch_tokens": 48}),
        ("deepspeed-zero2-1rank", 1, {"backend": "deepspeed", "deepspeed": {"zero_stage": 2}}),
        ("deepspeed-zero2-2ranks", 2, {"backend": "deepspeed", "deepspeed": {"zero_stage": 2}}),
        (
            "deepspeed-zero3-2ranks",
            2,
            {"backend": "deepspeed", "deepspeed": {"zero_stage": 3}, "micro_batch_tokens": 48},
        ),
    ],
)
def test_same_losses_and_weights(tmp_path: Path, reference: Run, name: str, nproc: int, config: dict[str, Any]) -> None:
    _assert_same(launch(tmp_path, name, _spec(**config), nproc=nproc), reference)


def test_deepspeed_launcher_and_no_shm_left(tmp_path: Path, reference: Run) -> None:
    """Under the ``deepspeed`` launcher (it passes ``--local_rank``); its CPU all-reduce buffers are removed."""
    before = set(Path("/dev/shm").glob("deepspeed_allreduce_buffer_*"))
    run = launch(tmp_path, "ds-launcher", _spec(backend="deepspeed"), nproc=2, launcher="deepspeed")
    _assert_same(run, reference)
    assert set(Path("/dev/shm").glob("deepspeed_allreduce_buffer_*")) <= before


def test_deepspeed_cpu_offload_and_a_users_config_file(tmp_path: Path, reference: Run) -> None:
    """ZeRO-2 with DeepSpeed's CPU Adam (a separate implementation: agreement to 1e-3, not rounding), and a
    DeepSpeed JSON of the user's (ZeRO-1) whose batch-size keys arpo overrides."""
    offload = launch(
        tmp_path, "offload", _spec(backend="deepspeed", deepspeed={"zero_stage": 2, "offload_optimizer": True})
    )
    for a, b in zip(offload.metrics, reference.metrics, strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-3, abs=1e-5)
    for name, value in reference.weights.items():
        assert offload.weights[name] == pytest.approx(value, rel=1e-3, abs=1e-3), name

    user = tmp_path / "ds.json"
    user.write_text('{"train_batch_size": 1024, "gradient_accumulation_steps": 64, "zero_optimization": {"stage": 1}}')
    run = launch(tmp_path, "user", _spec(backend="deepspeed", deepspeed={"config_file": str(user)}), nproc=2)
    _assert_same(run, reference)


def test_fsdp_bf16_mixed_precision_tracks_fp32(tmp_path: Path, reference: Run) -> None:
    """bf16 compute with fp32 parameters and reductions: close to fp32 (bf16 has 8 bits of mantissa), not equal."""
    run = launch(tmp_path, "bf16", _spec(backend="fsdp", precision="bf16"), nproc=2)
    for a, b in zip(run.metrics, reference.metrics, strict=True):
        assert a["loss"] == pytest.approx(b["loss"], abs=0.05)
        assert a["grad_norm"] == pytest.approx(b["grad_norm"], rel=0.05)
    assert any(a["loss"] != b["loss"] for a, b in zip(run.metrics, reference.metrics, strict=True))  # bf16 was on
