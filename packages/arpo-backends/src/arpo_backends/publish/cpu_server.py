"""Full weights to arpo's CPU server: safetensors into a versioned folder, then ``POST /v1/load_weights``.

Per ``publish(weights, version)``:

1. every bucket becomes one file ``model-00001.safetensors``, ``model-00002.safetensors``, ... in a temporary
   folder, renamed to ``directory/v{version:06d}`` once complete (``VersionFolders``), so no server ever reads
   half a checkpoint and rank 0 holds one bucket at a time;
2. ``POST {url}/v1/load_weights {"path": <folder>, "weight_version": version}`` to every server at once; the
   server checks every tensor, waits for its running batch to drain, copies the weights in place and answers
   ``{"status": "ok", "weight_version": version}`` (checked here);
3. folders older than the newest ``keep_versions`` are deleted (only after every server loaded the new one).

Tensors within one bucket that share storage (tied embeddings: ``lm_head.weight`` is ``embed_tokens.weight``)
are written once under the first name, since safetensors refuses shared storage and the server fills a tied
parameter from either name. The folder must be readable by the servers under the same path.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from arpo_backends.publish.base import Publisher
from arpo_backends.publish.buckets import prepare_bucket
from arpo_backends.publish.errors import PublishError
from arpo_backends.publish.folders import VersionFolders
from arpo_backends.publish.http import HttpClient
from arpo_backends.publish.source import AdapterSource, WeightSource, drain, require_weights

if TYPE_CHECKING:
    import torch

__all__ = ["CpuServerPublisher", "write_shards"]

ROUTE = "/v1/load_weights"
_HINT_404 = "this is not arpo's CPU server (arpo serve); for vLLM use the vllm_lora or vllm_nccl weight target."


def _unaliased(bucket: list[tuple[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The bucket as a dict, without a tensor that is the very same view as an earlier one (a tied parameter).

    Another view of storage already written (rare: a slice of it) is cloned, since safetensors refuses shared
    storage within a file.
    """
    out: dict[str, torch.Tensor] = {}
    views: set[tuple[object, ...]] = set()
    storages: set[int] = set()
    for name, tensor in bucket:
        if tensor.numel() == 0:
            out[name] = tensor
            continue
        ptr = tensor.untyped_storage().data_ptr()
        view = (ptr, tensor.storage_offset(), tuple(tensor.shape), tensor.stride(), tensor.dtype)
        if view in views:
            continue  # tied: the server fills it from the first name
        views.add(view)
        if ptr in storages:
            tensor = tensor.clone()
        storages.add(ptr)
        out[name] = tensor
    return out


def write_shards(weights: WeightSource, folder: Path) -> int:
    """Write each bucket as ``model-NNNNN.safetensors`` into ``folder``; returns the number of tensors written."""
    from safetensors.torch import save_file

    buckets = iter(weights)
    seen: set[str] = set()
    count = 0
    try:
        for index, bucket in enumerate(buckets, start=1):
            state = _unaliased(prepare_bucket(bucket, seen))
            if not state:
                continue
            save_file(state, str(folder / f"model-{index:05d}.safetensors"), metadata={"format": "pt"})
            count += len(state)
    except BaseException:
        drain(buckets)
        raise
    if count == 0:
        raise PublishError("the weight source yielded no tensors; pass the model's (name, tensor) pairs in buckets.")
    return count


class CpuServerPublisher(Publisher):
    kind = "cpu_server"

    def __init__(
        self,
        urls: Sequence[str],
        directory: Path,
        *,
        timeout_s: float = 60.0,
        transfer_timeout_s: float = 600.0,
        keep_versions: int = 2,
    ) -> None:
        super().__init__()
        self.urls = list(urls)
        self.folders = VersionFolders(directory, "v", keep_versions)
        self.transfer_timeout_s = transfer_timeout_s
        self._http = HttpClient(timeout_s)

    def publish(self, weights: WeightSource | AdapterSource, version: int) -> list[str]:
        self._check_version(version)
        source = require_weights(weights, self.kind)
        counted: list[int] = []
        folder = self.folders.write(version, lambda tmp: counted.append(write_shards(source, tmp)))
        body = {"path": str(folder), "weight_version": version}
        replies = self._http.post_all(
            self.urls, ROUTE, body=body, timeout_s=self.transfer_timeout_s, hint_404=_HINT_404
        )
        for reply in replies:
            answer = reply.json()
            served = answer.get("weight_version") if isinstance(answer, dict) else None
            if served != version:
                raise PublishError(
                    f"POST {reply.url}{ROUTE} answered weight_version {served!r} instead of {version}: "
                    f"{reply.text[:200]}"
                )
        self.last_version = version
        self.folders.prune(version)
        return [f"{url}: weight_version {version} ({counted[0]} tensors from {folder})" for url in self.urls]

    def close(self) -> None:
        self._http.close()
