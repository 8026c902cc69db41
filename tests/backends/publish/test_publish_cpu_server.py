"""The cpu_server publisher against the real CPU server: the served logprobs become the published model's."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
httpx2 = pytest.importorskip("httpx2")
pytest.importorskip("fastapi")

from transformers import AutoModelForCausalLM  # noqa: E402

from arpo_backends.publish import CpuServerPublisher, PublishError, iter_buckets, make_publisher  # noqa: E402
from arpo_backends.publish.testing import RecordingServer  # noqa: E402
from arpo_backends.serve.testing import RunningServer, serve_in_thread  # noqa: E402
from arpo_core.runtime.trainer import WeightTarget  # noqa: E402

PROMPT = [5, 6, 7, 8, 9, 10]
CHANGED = "model.layers.1.mlp.down_proj.weight"


@pytest.fixture
def server() -> Iterator[RunningServer]:
    with serve_in_thread("tiny") as running:
        yield running


def served_next_token(server: RunningServer) -> tuple[int, float]:
    """Greedy next token after PROMPT and its logprob, as the server computes them."""
    body = {
        "model": server.model,
        "prompt": PROMPT,
        "max_tokens": 1,
        "temperature": 0,
        "logprobs": 1,
        "return_token_ids": True,
    }
    reply = httpx2.post(server.base_url + "/v1/completions", json=body, timeout=60)
    reply.raise_for_status()
    choice = reply.json()["choices"][0]
    return choice["token_ids"][0], choice["logprobs"]["token_logprobs"][0]


def local_next_token(model: Any) -> tuple[int, float]:
    """The same, by one forward pass of the model in this process."""
    with torch.no_grad():
        logits = model(torch.tensor([PROMPT])).logits[0, -1].double()
    logprobs = torch.log_softmax(logits, dim=-1)
    token = int(logprobs.argmax())
    return token, float(logprobs[token])


def health_version(server: RunningServer) -> int:
    return int(server.get("/health")["weight_version"])


def test_publish_changes_the_served_model(server: RunningServer, tmp_path: Path) -> None:
    original = AutoModelForCausalLM.from_pretrained(server.folder, dtype=torch.float32).eval()
    modified = AutoModelForCausalLM.from_pretrained(server.folder, dtype=torch.float32).eval()
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        param = modified.get_parameter(CHANGED)
        param.add_(3.0 * torch.randn(param.shape, generator=generator))

    before = served_next_token(server)
    assert health_version(server) == 0
    assert before[0] == local_next_token(original)[0]
    assert before[1] == pytest.approx(local_next_token(original)[1], abs=1e-4)
    expected = local_next_token(modified)
    assert abs(expected[1] - before[1]) > 1e-3  # the change is visible at this prompt

    publisher = make_publisher(WeightTarget("cpu_server", (server.base_url + "/v1",), tmp_path / "weights"))
    assert isinstance(publisher, CpuServerPublisher)
    # 64 KiB buckets over the 21 tensors (hidden 64, kv 32, mlp 128, vocab 512, fp32), by hand:
    # [embed 128 KiB] [q k v o: 16+8+8+16 KiB] [gate up: 32+32] [down, 2 norms, q1, k1: 32+0.5+16+8]
    # [v1 o1 gate1: 8+16+32] [up1 down1: 32+32] [2 norms, final norm: 0.75 KiB] [lm_head 128 KiB] = 8 files
    lines = publisher.publish(iter_buckets(modified.state_dict().items(), bucket_bytes=64 * 1024), version=1)
    folder = tmp_path / "weights" / "v000001"
    assert lines == [f"{server.base_url}: weight_version 1 (21 tensors from {folder})"]
    assert len(list(folder.glob("model-*.safetensors"))) == 8
    assert health_version(server) == 1
    after = served_next_token(server)
    assert after[0] == expected[0]
    assert after[1] == pytest.approx(expected[1], abs=1e-4)
    assert after[1] != pytest.approx(before[1], abs=1e-3)

    # one bucket holding tied embed_tokens / lm_head (shared storage): written once, still loads
    publisher.publish([list(original.state_dict().items())], version=2)
    assert health_version(server) == 2
    restored = served_next_token(server)
    assert restored[0] == before[0] and restored[1] == pytest.approx(before[1], abs=1e-5)

    publisher.publish(iter_buckets(modified.named_parameters(), bucket_bytes=10**9), version=3)
    assert health_version(server) == 3
    assert served_next_token(server)[1] == pytest.approx(expected[1], abs=1e-4)
    # the newest two versions stay, nothing temporary is left behind
    assert sorted(p.name for p in (tmp_path / "weights").iterdir()) == ["v000002", "v000003"]
    publisher.close()


def test_a_refused_folder_names_the_route_and_keeps_the_weights(server: RunningServer, tmp_path: Path) -> None:
    before = served_next_token(server)
    publisher = make_publisher(WeightTarget("cpu_server", (server.base_url,), tmp_path))
    with pytest.raises(PublishError, match=r"POST http://127\.0\.0\.1:\d+/v1/load_weights answered 400: .*wrong shape"):
        publisher.publish([[("model.embed_tokens.weight", torch.zeros(3, 3))]], version=1)
    assert health_version(server) == 0 and served_next_token(server) == before
    assert publisher.last_version is None


def test_an_unreachable_server_is_named(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    publisher = make_publisher(WeightTarget("cpu_server", (url,), tmp_path), timeout_s=5)
    with pytest.raises(PublishError, match=rf"cannot reach the inference server at {url} \(POST /v1/load_weights"):
        publisher.publish([[("w", torch.zeros(2))]], version=1)


def test_several_servers_and_the_wrong_server(tmp_path: Path) -> None:
    with RecordingServer() as first, RecordingServer() as second:
        publisher = make_publisher(WeightTarget("cpu_server", (first.base_url, second.base_url), tmp_path))
        lines = publisher.publish([[("w", torch.ones(2))], [("v", torch.zeros(3))]], version=4)
        assert lines == [
            f"{first.base_url}: weight_version 4 (2 tensors from {tmp_path / 'v000004'})",
            f"{second.base_url}: weight_version 4 (2 tensors from {tmp_path / 'v000004'})",
        ]
        for server in (first, second):
            assert server.routes() == ["POST /v1/load_weights"]
            assert server.bodies("/v1/load_weights") == [{"path": str(tmp_path / "v000004"), "weight_version": 4}]
        second.respond("/v1/load_weights", 404, {"detail": "Not Found"})
        with pytest.raises(PublishError, match=r"answered 404 .*this is not arpo's CPU server"):
            publisher.publish([[("w", torch.ones(2))]], version=5)
        with pytest.raises(PublishError, match="yielded no tensors"):
            publisher.publish([[]], version=6)
        with pytest.raises(TypeError, match="the cpu_server publisher sends full weights"):
            publisher.publish(_Adapter(), version=7)


class _Adapter:
    def save_adapter(self, folder: Path) -> None:
        raise AssertionError("not called")
