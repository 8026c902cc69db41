"""The vllm_nccl publisher against a recording HTTP server and a recording broadcaster.

Checked: the exact route sequence and bodies (group opened once, then per version pause, start, one
/update_weights per bucket with its names, dtypes and shapes while the broadcaster receives exactly those
tensors in that order, finish with the version, prefix-cache reset, resume), rank offsets over several servers,
and the failures: a broadcast that hangs, a server that refuses a bucket, a missing route, an unreachable server —
each with /resume sent when the servers had been paused.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

torch = pytest.importorskip("torch")

from arpo_backends.publish import (  # noqa: E402
    NcclBroadcaster,
    PublishError,
    VllmNcclPublisher,
    make_publisher,
)
from arpo_backends.publish.testing import RecordingBroadcaster, RecordingServer  # noqa: E402
from arpo_core.runtime.trainer import WeightTarget  # noqa: E402

PER_VERSION = [
    "POST /pause",
    "POST /start_weight_update",
    "POST /update_weights",
    "POST /update_weights",
    "POST /finish_weight_update",
    "POST /reset_prefix_cache",
    "POST /resume",
]


def nccl(urls: list[str], broadcaster: RecordingBroadcaster, **kwargs: Any) -> VllmNcclPublisher:
    options: dict[str, Any] = {"master_address": "127.0.0.1", "master_port": 29555, "timeout_s": 10}
    publisher = make_publisher(WeightTarget("vllm_nccl", tuple(urls)), broadcaster=broadcaster, **options | kwargs)
    assert isinstance(publisher, VllmNcclPublisher)
    return publisher


def buckets(scale: float = 1.0) -> list[list[tuple[str, torch.Tensor]]]:
    return [
        [
            ("module.model.embed_tokens.weight", scale * torch.arange(6, dtype=torch.float32).reshape(2, 3)),
            ("model.norm.weight", torch.full((4,), scale, dtype=torch.bfloat16)),
        ],
        [("_orig_mod.lm_head.weight", scale * torch.ones(5, 2, dtype=torch.float16))],
    ]


UPDATE_BODIES = [
    {
        "update_info": {
            "names": ["model.embed_tokens.weight", "model.norm.weight"],
            "dtype_names": ["float32", "bfloat16"],
            "shapes": [[2, 3], [4]],
        }
    },
    {"update_info": {"names": ["lm_head.weight"], "dtype_names": ["float16"], "shapes": [[5, 2]]}},
]


def test_the_choreography_over_two_versions() -> None:
    fake = RecordingBroadcaster()
    with RecordingServer() as server:
        publisher = nccl([server.base_url + "/v1"], fake)
        lines = publisher.publish(buckets(1.0), version=1)
        assert lines == [f"{server.base_url}: weight_version 1 (3 tensors in 2 bucket(s) over NCCL)"]
        assert server.routes() == ["GET /get_world_size", "POST /init_weight_transfer_engine", *PER_VERSION]
        calls = server.calls
        assert calls[0].query == {} and calls[0].body is None
        init = {"master_address": "127.0.0.1", "master_port": 29555, "rank_offset": 1, "world_size": 2}
        assert calls[1].body == {"init_info": init}
        assert calls[2].query == {"mode": "wait", "wait_for_inflight_requests": "true"} and calls[2].body is None
        assert calls[3].body is None
        assert [calls[4].body, calls[5].body] == UPDATE_BODIES
        assert calls[6].body == {"weight_version": "1"}
        assert calls[7].body is None and calls[8].body is None
        assert fake.inits == [("127.0.0.1", 29555, 2)]
        sent = [[(t.dtype, t.tolist()) for t in bucket] for bucket in fake.broadcasts]
        assert sent == [
            [(torch.float32, [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]), (torch.bfloat16, [1.0, 1.0, 1.0, 1.0])],
            [(torch.float16, [[1.0, 1.0]] * 5)],
        ]

        publisher.publish(buckets(2.0), version=2)  # the group stays open: no second init
        assert server.routes()[9:] == PER_VERSION
        assert [c.body for c in server.calls[11:13]] == UPDATE_BODIES
        assert server.calls[13].body == {"weight_version": "2"}
        assert len(fake.inits) == 1 and len(fake.broadcasts) == 4
        assert fake.broadcasts[3][0].tolist() == [[2.0, 2.0]] * 5
        publisher.close()
        assert fake.closed


def test_rank_offsets_over_several_servers() -> None:
    fake = RecordingBroadcaster()
    with RecordingServer() as first, RecordingServer() as second:
        first.respond("/get_world_size", 200, {"world_size": 2})  # e.g. TP=2
        nccl([first.base_url, second.base_url], fake, pause_mode="keep", reset_prefix_cache=False).publish(
            buckets(), version=5
        )
        # 1 trainer + 2 + 1 workers = 4 ranks; the first server's workers are ranks 1-2, the second's rank 3
        assert first.bodies("/init_weight_transfer_engine")[0]["init_info"]["rank_offset"] == 1
        assert second.bodies("/init_weight_transfer_engine")[0]["init_info"]["rank_offset"] == 3
        for server in (first, second):
            assert server.bodies("/init_weight_transfer_engine")[0]["init_info"]["world_size"] == 4
            assert server.calls[2].query == {"mode": "keep"}
            assert "POST /reset_prefix_cache" not in server.routes()
            assert server.bodies("/update_weights") == UPDATE_BODIES
            assert server.bodies("/finish_weight_update") == [{"weight_version": "5"}]
        assert fake.inits == [("127.0.0.1", 29555, 4)] and len(fake.broadcasts) == 2


def test_given_world_sizes_skip_the_question() -> None:
    with RecordingServer() as server:
        nccl([server.base_url], RecordingBroadcaster(), inference_world_sizes=[4]).publish(buckets(), version=0)
        assert server.routes()[0] == "POST /init_weight_transfer_engine"
        assert server.bodies("/init_weight_transfer_engine")[0]["init_info"]["world_size"] == 5


def test_a_hung_broadcast_times_out_and_the_servers_resume() -> None:
    fake = RecordingBroadcaster(hang=True)
    pulled: list[int] = []

    def source() -> Iterator[list[tuple[str, torch.Tensor]]]:
        for index, bucket in enumerate(buckets()):
            pulled.append(index)
            yield bucket

    with RecordingServer() as server:
        publisher = nccl([server.base_url], fake, transfer_timeout_s=0.5)
        began = time.monotonic()
        with pytest.raises(PublishError) as caught:
            publisher.publish(source(), version=1)
        assert time.monotonic() - began < 5
        message = str(caught.value)
        assert "POST /update_weights of bucket 1 (2 tensors, first 'model.embed_tokens.weight')" in message
        assert "did not finish within 0.5 s (still waiting for the NCCL broadcast)" in message
        assert server.routes()[-3:] == ["POST /start_weight_update", "POST /update_weights", "POST /resume"]
        assert pulled == [0, 1]  # drained: ranks gathering in lockstep are not left waiting
        with pytest.raises(PublishError, match="NCCL group is in an unknown state; restart the vLLM servers"):
            publisher.publish(buckets(), version=2)
        assert server.routes()[-1] == "POST /resume"  # the refused publish sent nothing
        publisher.close()  # releases the hung fake


def test_a_refused_bucket_is_reported_at_once_and_the_servers_resume() -> None:
    fake = RecordingBroadcaster(hang=True)  # a real broadcast without receivers would hang too
    with RecordingServer() as server:
        server.respond("/update_weights", 500, {"error": "KeyError: 'model.norm.weight'"})
        publisher = nccl([server.base_url], fake, transfer_timeout_s=30)
        began = time.monotonic()
        with pytest.raises(PublishError, match=r"POST http://127\.0\.0\.1:\d+/update_weights answered 500: .*KeyError"):
            publisher.publish(buckets(), version=1)
        assert time.monotonic() - began < 10  # not the 30 s timeout
        assert server.routes()[-2:] == ["POST /update_weights", "POST /resume"]
        publisher.close()


def test_a_failing_broadcast_is_reported_and_the_servers_resume() -> None:
    fake = RecordingBroadcaster(fail=RuntimeError("NCCL error 6: unhandled system error"))
    with RecordingServer() as server:
        with pytest.raises(PublishError, match="the NCCL broadcast failed: RuntimeError"):
            nccl([server.base_url], fake).publish(buckets(), version=1)
        assert server.routes()[-1] == "POST /resume"


def test_a_server_without_the_routes_gets_the_hint() -> None:
    with RecordingServer() as server:
        server.respond("/pause", 404, {"detail": "Not Found"})
        with pytest.raises(PublishError) as caught:
            nccl([server.base_url], RecordingBroadcaster()).publish(buckets(), version=1)
        message = str(caught.value)
        assert f"POST {server.base_url}/pause answered 404" in message
        assert "VLLM_SERVER_DEV_MODE=1" in message and "--weight-transfer-config" in message
        assert server.routes()[-2:] == ["POST /pause", "POST /resume"]


def test_a_rendezvous_that_never_completes() -> None:
    fake = RecordingBroadcaster()
    with RecordingServer() as server:
        server.hang("/init_weight_transfer_engine")
        publisher = nccl([server.base_url], fake, transfer_timeout_s=0.5)
        with pytest.raises(
            PublishError, match=r"NCCL rendezvous at 127\.0\.0\.1:29555 \(world size 2\) did not finish within 0\.5 s"
        ):
            publisher.publish(buckets(), version=1)
        assert "POST /pause" not in server.routes()  # inference was never paused
        assert fake.closed


def test_an_unreachable_server_is_named() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    with pytest.raises(PublishError, match=rf"cannot reach the inference server at {url} \(GET /get_world_size"):
        nccl([url], RecordingBroadcaster()).publish(buckets(), version=1)


def test_an_empty_source_is_refused_after_resuming() -> None:
    with RecordingServer() as server:
        with pytest.raises(PublishError, match="the weight source yielded no tensors"):
            nccl([server.base_url], RecordingBroadcaster()).publish([[]], version=1)
        assert server.routes()[-1] == "POST /resume"
        assert "POST /finish_weight_update" not in server.routes()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message given without CUDA")
def test_the_real_broadcaster_needs_cuda_and_vllm() -> None:
    with pytest.raises(RuntimeError, match="needs CUDA and vllm installed"):
        NcclBroadcaster()
    with pytest.raises(RuntimeError, match="needs CUDA and vllm installed"):
        make_publisher(WeightTarget("vllm_nccl", ("http://127.0.0.1:8000",)))
