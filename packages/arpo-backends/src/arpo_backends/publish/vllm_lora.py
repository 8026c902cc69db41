"""LoRA adapters to vLLM through its runtime adapter routes, one adapter name per version.

Per ``publish(adapter, version)``:

1. the adapter saves itself (peft ``save_pretrained``) into a temporary folder, renamed to
   ``directory/lora-v{version:06d}`` once complete;
2. ``POST {url}/v1/load_lora_adapter {"lora_name": "arpo-v{version}", "lora_path": <folder>}`` to every server
   at once; from then on ``publisher.model_name`` is ``"arpo-v{version}"``: the rollout client requests
   ``model=publisher.model_name``;
3. ``POST {url}/v1/unload_lora_adapter {"lora_name": <previous name>}`` to every server (a failure here is
   logged, not raised: the new adapter is already served);
4. adapter folders older than the newest ``keep_versions`` are deleted.

Load first, unload second: there is always an adapter to serve, and a request still running on the previous
adapter is not cut off before the new one exists. A new name per version rather than ``load_inplace`` with one
name: vLLM's prefix cache is keyed by the adapter, so a new adapter cannot reuse KV blocks computed with the old
weights, and every rollout is tagged with the adapter, hence the version, it was sampled from. If loading fails
on some servers, the adapter is unloaded again from those that took it and ``model_name`` stays unchanged.

vLLM serves these routes only when started with ``VLLM_ALLOW_RUNTIME_LORA_UPDATING=True`` and ``--enable-lora``
(with ``--max-lora-rank`` at least the adapter's rank); it answers them with plain text, not JSON. The folder must
be readable by the servers under the same path. Routes and fields: vLLM's ``entrypoints/serve/lora`` router
(``LoadLoRAAdapterRequest``: ``lora_name``, ``lora_path``, ``load_inplace``; ``UnloadLoRAAdapterRequest``:
``lora_name``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from arpo_backends.publish.base import Publisher
from arpo_backends.publish.errors import PublishError
from arpo_backends.publish.folders import VersionFolders
from arpo_backends.publish.http import HttpClient, Reply
from arpo_backends.publish.source import AdapterSource, WeightSource, require_adapter

__all__ = ["ENV_VAR", "LOAD_ROUTE", "UNLOAD_ROUTE", "VllmLoraPublisher"]

log = logging.getLogger(__name__)

LOAD_ROUTE = "/v1/load_lora_adapter"
UNLOAD_ROUTE = "/v1/unload_lora_adapter"
ENV_VAR = "VLLM_ALLOW_RUNTIME_LORA_UPDATING"
_HINT_404 = (
    f"start vLLM with {ENV_VAR}=True and --enable-lora so that it serves runtime LoRA loading "
    "(or use the cpu_server weight target for arpo's CPU server)."
)


class VllmLoraPublisher(Publisher):
    kind = "vllm_lora"

    def __init__(
        self,
        urls: Sequence[str],
        directory: Path,
        *,
        timeout_s: float = 60.0,
        transfer_timeout_s: float = 600.0,
        keep_versions: int = 2,
        name_prefix: str = "arpo",
    ) -> None:
        super().__init__()
        if not name_prefix or any(c.isspace() for c in name_prefix):
            raise ValueError(f"LoRA name prefix {name_prefix!r} must be a non-empty name without spaces.")
        self.urls = list(urls)
        self.folders = VersionFolders(directory, "lora-v", keep_versions)
        self.name_prefix = name_prefix
        self.transfer_timeout_s = transfer_timeout_s
        self._http = HttpClient(timeout_s)
        self._served: str | None = None

    @property
    def model_name(self) -> str | None:
        """``arpo-v{version}`` of the last published version, ``None`` before the first publish."""
        return self._served

    def adapter_name(self, version: int) -> str:
        return f"{self.name_prefix}-v{version}"

    def publish(self, weights: WeightSource | AdapterSource, version: int) -> list[str]:
        self._check_version(version)
        adapter = require_adapter(weights, self.kind)
        folder = self.folders.write(version, lambda tmp: _save(adapter, tmp))
        name = self.adapter_name(version)
        body = {"lora_name": name, "lora_path": str(folder)}
        results = self._http.post_each(
            self.urls, LOAD_ROUTE, body=body, timeout_s=self.transfer_timeout_s, hint_404=_HINT_404
        )
        errors = [r for r in results if isinstance(r, PublishError)]
        if errors:
            loaded = [r.url for r in results if isinstance(r, Reply)]
            if loaded:  # keep every server on one adapter: undo the load where it succeeded
                self._unload(loaded, name)
            if len(errors) == 1:
                raise errors[0]
            raise PublishError(f"{errors[0]} (and {len(errors) - 1} more server(s) failed the same call)")
        previous, self._served = self._served, name
        self.last_version = version
        lines = [f"{url}: LoRA adapter {name} loaded from {folder}" for url in self.urls]
        if previous is not None:
            lines += [f"{url}: LoRA adapter {previous} unloaded" for url in self._unload(self.urls, previous)]
        self.folders.prune(version)
        return lines

    def _unload(self, urls: Sequence[str], name: str) -> list[str]:
        """Unload ``name`` everywhere (best effort); returns the servers that unloaded it."""
        done = []
        results = self._http.post_each(urls, UNLOAD_ROUTE, body={"lora_name": name})
        for url, result in zip(urls, results, strict=True):
            if isinstance(result, PublishError):
                log.warning("could not unload LoRA adapter %s: %s", name, result)
            else:
                done.append(url)
        return done

    def close(self) -> None:
        self._http.close()


def _save(adapter: AdapterSource, folder: Path) -> None:
    adapter.save_adapter(folder)
    if not (folder / "adapter_config.json").is_file():
        raise PublishError(
            f"the adapter source wrote no adapter_config.json into {folder}; save_adapter must write peft's "
            "save_pretrained output (adapter_config.json and adapter_model.safetensors)."
        )
    if not any(folder.glob("adapter_model.*")):
        raise PublishError(
            f"the adapter source wrote no adapter_model.safetensors into {folder}; save_adapter must write peft's "
            "save_pretrained output."
        )
