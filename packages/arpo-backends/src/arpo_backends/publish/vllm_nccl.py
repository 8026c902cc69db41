"""Full weights to vLLM over NCCL, driven through vLLM's weight-transfer routes (dev mode).

The servers run with ``VLLM_SERVER_DEV_MODE=1`` and ``--weight-transfer-config '{"backend": "nccl"}'``. HTTP is
the control plane, NCCL the data plane (a ``WeightBroadcaster`` on trainer rank 0). Once per publisher, on the
first ``publish``:

- ``GET {url}/get_world_size`` per server (its TP × PP × DP workers; skipped when ``inference_world_sizes`` is
  given); the group has ``1 + Σ workers`` ranks, the trainer is rank 0, server ``i`` starts at
  ``rank_offset = 1 + Σ_{j<i} workers_j``;
- ``POST {url}/init_weight_transfer_engine {"init_info": {"master_address", "master_port", "rank_offset",
  "world_size"}}`` to every server, concurrently with ``broadcaster.init`` (both sides meet in one rendezvous).

Then per ``publish(weights, version)``, on every server at once:

1. ``POST /pause?mode=wait&wait_for_inflight_requests=true``: in-flight requests finish on the old weights and no
   new one starts (``mode`` is ``pause_mode``: ``wait``, ``keep`` or ``abort``; the second parameter is the
   deprecated spelling of ``wait``, sent too so that a release without ``mode`` does not abort the rollouts);
2. ``POST /start_weight_update``;
3. per bucket: ``POST /update_weights {"update_info": {"names", "dtype_names", "shapes"}}`` while the broadcaster
   sends the bucket's tensors in that order; the route returns once the workers have loaded them;
4. ``POST /finish_weight_update {"weight_version": "<version>"}`` (a string: vLLM declares it ``str | None``);
5. ``POST /reset_prefix_cache`` (no cached prefix outlives the weights that computed it; skipped when
   ``reset_prefix_cache=False``);
6. ``POST /resume``.

The group is opened before the pause, as in vLLM's own example, so a failed rendezvous leaves inference running.
Every HTTP call has a timeout; each bucket (POST and broadcast together) and the rendezvous have
``transfer_timeout_s``: a silent NCCL hang becomes a ``PublishError`` naming the route and the seconds. On any
failure after the pause, ``/resume`` is sent to every server before the error is raised, so inference never stays
paused. A failure during a transfer leaves the NCCL group in an unknown state: the publisher refuses further
publishes with a clear error (restart the servers and the run).

Fields omitted on purpose: ``packed`` (its place moved from ``update_info`` to ``init_info`` between vLLM
releases, and vLLM builds these dataclasses with ``**body``, rejecting an unknown key; both default to unpacked),
``is_checkpoint_format`` (default true: names and shapes are the Hugging Face checkpoint's).
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from functools import partial
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from arpo_backends.publish.base import Publisher
from arpo_backends.publish.broadcast import WeightBroadcaster
from arpo_backends.publish.buckets import prepare_bucket
from arpo_backends.publish.errors import PublishError
from arpo_backends.publish.http import HttpClient
from arpo_backends.publish.source import AdapterSource, Bucket, WeightSource, drain, require_weights
from arpo_backends.publish.threads import spawn, wait_all

if TYPE_CHECKING:
    import torch

__all__ = ["PAUSE_MODES", "VllmNcclPublisher", "update_info"]

log = logging.getLogger(__name__)

PAUSE_MODES = ("wait", "keep", "abort")
_HINT_404 = (
    'start vLLM with VLLM_SERVER_DEV_MODE=1 and --weight-transfer-config \'{"backend": "nccl"}\' '
    "(a vLLM with the weight-transfer API) so that it serves the weight-transfer routes."
)


def update_info(bucket: Sequence[tuple[str, torch.Tensor]]) -> dict[str, Any]:
    """``{"names", "dtype_names", "shapes"}`` of a bucket, as vLLM's NCCL engine reads them."""
    return {
        "names": [name for name, _ in bucket],
        "dtype_names": [str(t.dtype).removeprefix("torch.") for _, t in bucket],
        "shapes": [[int(size) for size in t.shape] for _, t in bucket],
    }


_FAILURE_GRACE_S = 5.0
"""How long a failed bucket waits for in-flight ``/update_weights`` answers before ``/resume`` is sent."""


class VllmNcclPublisher(Publisher):
    kind = "vllm_nccl"

    def __init__(
        self,
        urls: Sequence[str],
        broadcaster: WeightBroadcaster,
        *,
        timeout_s: float = 60.0,
        transfer_timeout_s: float = 600.0,
        master_address: str | None = None,
        master_port: int | None = None,
        inference_world_sizes: Sequence[int] | None = None,
        pause_mode: str = "wait",
        reset_prefix_cache: bool = True,
    ) -> None:
        super().__init__()
        if pause_mode not in PAUSE_MODES:
            raise ValueError(f"pause_mode={pause_mode!r} is not one of {', '.join(PAUSE_MODES)}.")
        if inference_world_sizes is not None and (
            len(inference_world_sizes) != len(urls) or any(n < 1 for n in inference_world_sizes)
        ):
            raise ValueError(
                f"inference_world_sizes={list(inference_world_sizes)} must give one positive worker count per URL "
                f"({len(urls)} URL(s))."
            )
        if transfer_timeout_s <= 0:
            raise ValueError(f"transfer_timeout_s={transfer_timeout_s} must be positive.")
        self.urls = list(urls)
        self.broadcaster = broadcaster
        self.transfer_timeout_s = transfer_timeout_s
        self.master_address = master_address
        self.master_port = master_port
        self.inference_world_sizes = list(inference_world_sizes) if inference_world_sizes is not None else None
        self.pause_mode = pause_mode
        self.reset_prefix_cache = reset_prefix_cache
        self._http = HttpClient(timeout_s)
        self._connected = False
        self._broken: str | None = None

    # ------------------------------------------------------------------ publish

    def publish(self, weights: WeightSource | AdapterSource, version: int) -> list[str]:
        self._check_version(version)
        source = require_weights(weights, self.kind)
        buckets = iter(source)
        try:
            if self._broken is not None:
                raise PublishError(
                    f"an earlier NCCL weight transfer failed ({self._broken}), so the NCCL group is in an unknown "
                    "state; restart the vLLM servers and the run."
                )
            if not self._connected:
                self._connect()
        except BaseException:
            drain(buckets)
            raise
        tensors, count = self._update(buckets, version)
        self.last_version = version
        return [
            f"{url}: weight_version {version} ({tensors} tensors in {count} bucket(s) over NCCL)" for url in self.urls
        ]

    def _update(self, buckets: Iterator[Bucket], version: int) -> tuple[int, int]:
        """Steps 1-6 of the module docstring; resumes the servers on any failure after the pause."""
        tensors = count = 0
        try:
            self._http.post_all(
                self.urls,
                "/pause",
                params=_pause_params(self.pause_mode),
                timeout_s=self.transfer_timeout_s,
                hint_404=_HINT_404,
            )
            self._http.post_all(self.urls, "/start_weight_update", hint_404=_HINT_404)
            seen: set[str] = set()
            for bucket in buckets:
                prepared = prepare_bucket(bucket, seen, to_cpu=False)
                if not prepared:
                    continue
                count += 1
                tensors += len(prepared)
                self._transfer(prepared, count)
            if tensors == 0:
                raise PublishError(
                    "the weight source yielded no tensors; pass the model's (name, tensor) pairs in buckets."
                )
            body = {"weight_version": str(version)}
            self._http.post_all(self.urls, "/finish_weight_update", body=body, hint_404=_HINT_404)
            if self.reset_prefix_cache:
                for reply in self._http.post_all(self.urls, "/reset_prefix_cache", hint_404=_HINT_404):
                    answer = reply.json()
                    if isinstance(answer, dict) and answer.get("success") is False:
                        log.warning("%s/reset_prefix_cache answered success=false after the weight update", reply.url)
        except BaseException as err:
            drain(buckets)
            resumed = self._http.post_each(self.urls, "/resume")
            failed = [r for r in resumed if isinstance(r, PublishError)]
            if failed:
                raise PublishError(f"{err} (and /resume failed too, so a server may stay paused: {failed[0]})") from err
            raise
        self._http.post_all(self.urls, "/resume", hint_404=_HINT_404)
        return tensors, count

    def _transfer(self, bucket: list[tuple[str, torch.Tensor]], index: int) -> None:
        """One bucket: ``/update_weights`` on every server while the broadcaster sends the tensors."""
        body = {"update_info": update_info(bucket)}
        timeout = self.transfer_timeout_s
        post = partial(self._http.post, route="/update_weights", body=body, timeout_s=timeout + 5.0)
        posts = [spawn(partial(post, url), "arpo-publish /update_weights") for url in self.urls]
        tensors = [t for _, t in bucket]
        sending = spawn(lambda: self.broadcaster.broadcast(tensors), "arpo-publish NCCL broadcast")
        pending = wait_all([*posts, sending], timeout)
        where = f"POST /update_weights of bucket {index} ({len(bucket)} tensors, first {bucket[0][0]!r})"
        failure = self._first_failure(posts, sending)
        if failure is not None:
            self._broken = f"{where}: {failure}"
            # Let the servers' answers that are already on their way land first (bounded), so the /resume that
            # follows reaches each server after its /update_weights rather than racing it.
            wait_all([p for p in posts if not p.done()], min(timeout, _FAILURE_GRACE_S))
            raise failure
        if pending:
            waiting = "the NCCL broadcast" if sending in pending else "the servers' answer"
            self._broken = f"{where} timed out"
            raise PublishError(
                f"{where} with its NCCL broadcast did not finish within {timeout:g} s (still waiting for {waiting}); "
                "NCCL may be hung: check that the servers reach the trainer and run the same NCCL."
            )

    @staticmethod
    def _first_failure(posts: list[Future[Any]], sending: Future[Any]) -> BaseException | None:
        """A server's error first (it explains a broadcast left without receivers), then the broadcaster's."""
        for future in [*posts, sending]:
            if future.done() and future.exception() is not None:
                err = future.exception()
                assert err is not None
                if future is sending and not isinstance(err, PublishError):
                    return PublishError(f"the NCCL broadcast failed: {err!r}")
                return err
        return None

    # ------------------------------------------------------------------ the group, once

    def _connect(self) -> None:
        sizes = self.inference_world_sizes or [self._world_size(url) for url in self.urls]
        world_size = 1 + sum(sizes)
        offsets = [1 + sum(sizes[:i]) for i in range(len(sizes))]
        address = self.master_address or _address_towards(self.urls[0])
        port = self.master_port or _free_port(address)
        timeout = self.transfer_timeout_s
        route = "/init_weight_transfer_engine"
        post = partial(self._http.post, route=route, timeout_s=timeout + 5.0, hint_404=_HINT_404)
        posts = [
            spawn(
                partial(post, url, body={"init_info": _init_info(address, port, offset, world_size)}),
                "arpo-publish /init_weight_transfer_engine",
            )
            for url, offset in zip(self.urls, offsets, strict=True)
        ]
        joining = spawn(lambda: self.broadcaster.init(address, port, world_size), "arpo-publish NCCL init")
        pending = wait_all([*posts, joining], timeout)
        failure = self._first_failure(posts, joining)
        if failure is None and pending:
            failure = PublishError(
                f"POST /init_weight_transfer_engine and the NCCL rendezvous at {address}:{port} (world size "
                f"{world_size}) did not finish within {timeout:g} s; check that the servers can reach {address}:{port} "
                '(or pass master_address) and were started with --weight-transfer-config \'{"backend": "nccl"}\'.'
            )
        if failure is not None:
            self.broadcaster.close()
            raise failure
        self._connected = True
        log.info("NCCL weight-transfer group open at %s:%d, world size %d", address, port, world_size)

    def _world_size(self, url: str) -> int:
        reply = self._http.get(url, "/get_world_size", hint_404=_HINT_404)
        answer = reply.json()
        size = answer.get("world_size") if isinstance(answer, dict) else None
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            raise PublishError(f"GET {url}/get_world_size answered {reply.text[:200]!r}, not a positive world_size.")
        return size

    def close(self) -> None:
        self.broadcaster.close()
        self._http.close()


def _pause_params(mode: str) -> dict[str, str]:
    """``mode``, plus the older spelling of ``wait`` that releases before ``mode`` ignore (newer ones accept both)."""
    if mode == "wait":
        return {"mode": "wait", "wait_for_inflight_requests": "true"}
    return {"mode": mode}


def _init_info(address: str, port: int, rank_offset: int, world_size: int) -> dict[str, Any]:
    return {"master_address": address, "master_port": port, "rank_offset": rank_offset, "world_size": world_size}


def _address_towards(url: str) -> str:
    """This machine's address on the route to the server (a UDP connect sends nothing)."""
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    port = parts.port or 80
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect((host, port))
            return str(probe.getsockname()[0])
        except OSError:
            return "127.0.0.1"


def _free_port(address: str) -> int:
    """A port free now on ``address`` for the group's TCP store (the store binds it moments later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((address, 0))
        except OSError:
            sock.bind(("", 0))
        return int(sock.getsockname()[1])
