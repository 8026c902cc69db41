"""make_publisher: one clear sentence for each bad target, before anything is sent."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("torch")

from arpo_backends.publish import (
    CpuServerPublisher,
    NullPublisher,
    VllmLoraPublisher,
    VllmNcclPublisher,
    make_publisher,
    needs_weights,
)
from arpo_backends.publish.testing import RecordingBroadcaster
from arpo_core.runtime.trainer import WeightTarget


def test_kinds(tmp_path: Path) -> None:
    urls = ("http://127.0.0.1:8000/v1/",)
    assert isinstance(make_publisher(WeightTarget("none")), NullPublisher)
    cpu = make_publisher(WeightTarget("cpu_server", urls, tmp_path))
    assert isinstance(cpu, CpuServerPublisher) and cpu.urls == ["http://127.0.0.1:8000"]
    assert isinstance(make_publisher(WeightTarget("vllm_lora", urls, tmp_path)), VllmLoraPublisher)
    nccl = make_publisher(WeightTarget("vllm_nccl", urls), broadcaster=RecordingBroadcaster())
    assert isinstance(nccl, VllmNcclPublisher)
    assert not needs_weights(WeightTarget("none")) and needs_weights(WeightTarget("cpu_server", urls, tmp_path))


@pytest.mark.parametrize(
    ("target", "message"),
    [
        (WeightTarget("vllm"), r"weight target kind 'vllm' is not one of cpu_server, vllm_lora, vllm_nccl, none\."),
        (WeightTarget("cpu_server", (), Path("/tmp")), r"needs the inference servers' URLs"),
        (WeightTarget("cpu_server", ("http://a:1",)), r"needs a directory \(WeightTarget\.directory\)"),
        (WeightTarget("vllm_lora", ("http://a:1",)), r"needs a directory"),
        (WeightTarget("cpu_server", ("localhost:8000",), Path("/tmp")), r"'localhost:8000' must start with http://"),
        (WeightTarget("vllm_lora", ("http://a:1/v1", "http://a:1"), Path("/tmp")), r"lists a server twice"),
    ],
)
def test_bad_targets(target: WeightTarget, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make_publisher(target)


def test_bad_options(tmp_path: Path) -> None:
    target = WeightTarget("vllm_nccl", ("http://a:1",))
    with pytest.raises(ValueError, match="pause_mode='later' is not one of wait, keep, abort"):
        make_publisher(target, broadcaster=RecordingBroadcaster(), pause_mode="later")
    with pytest.raises(ValueError, match=r"one positive worker count per URL \(1 URL\(s\)\)"):
        make_publisher(target, broadcaster=RecordingBroadcaster(), inference_world_sizes=[1, 2])
    with pytest.raises(ValueError, match="keep_versions=0 must be at least 1"):
        make_publisher(WeightTarget("cpu_server", ("http://a:1",), tmp_path), keep_versions=0)
    with pytest.raises(ValueError, match="timeout_s=0 must be positive"):
        make_publisher(WeightTarget("cpu_server", ("http://a:1",), tmp_path), timeout_s=0)


def test_versions_must_increase() -> None:
    publisher = make_publisher(WeightTarget("none"))
    assert publisher.publish([], 3) == []
    with pytest.raises(ValueError, match="version 3 is not newer than the last published version 3"):
        publisher.publish([], 3)
    with pytest.raises(ValueError, match="version=-1 must be a non-negative integer"):
        publisher.publish([], -1)
    assert publisher.model_name is None
