"""The vllm_lora publisher against a recording HTTP server: exact routes and bodies, failures in one sentence."""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")

from safetensors.torch import save_file  # noqa: E402

from arpo_backends.publish import PeftAdapter, PublishError, VllmLoraPublisher, make_publisher  # noqa: E402
from arpo_backends.publish.testing import RecordingServer  # noqa: E402
from arpo_core.runtime.trainer import WeightTarget  # noqa: E402


class FolderAdapter:
    """Writes what peft's save_pretrained writes, with one made-up tensor."""

    def __init__(self, value: float) -> None:
        self.value = value

    def save_adapter(self, folder: Path) -> None:
        (folder / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 2}))
        tensor = torch.full((2, 4), self.value)
        save_file({"base_model.model.layers.0.q_proj.lora_A.weight": tensor}, str(folder / "adapter_model.safetensors"))


def lora(server: RecordingServer, directory: Path, **kwargs: Any) -> VllmLoraPublisher:
    publisher = make_publisher(WeightTarget("vllm_lora", (server.base_url + "/v1",), directory), **kwargs)
    assert isinstance(publisher, VllmLoraPublisher)
    return publisher


def one_sentence(message: str) -> bool:
    return message.endswith(".") and not re.search(r"\.\s", message[:-1])


def test_load_new_then_unload_previous(tmp_path: Path) -> None:
    with RecordingServer() as server:
        publisher = lora(server, tmp_path)
        assert publisher.model_name is None
        v1 = tmp_path / "lora-v000001"
        assert publisher.publish(FolderAdapter(1.0), version=1) == [
            f"{server.base_url}: LoRA adapter arpo-v1 loaded from {v1}"
        ]
        assert publisher.model_name == "arpo-v1"
        v2 = tmp_path / "lora-v000002"
        assert publisher.publish(FolderAdapter(2.0), version=2) == [
            f"{server.base_url}: LoRA adapter arpo-v2 loaded from {v2}",
            f"{server.base_url}: LoRA adapter arpo-v1 unloaded",
        ]
        assert publisher.model_name == "arpo-v2"
        assert server.routes() == [
            "POST /v1/load_lora_adapter",
            "POST /v1/load_lora_adapter",
            "POST /v1/unload_lora_adapter",
        ]
        assert [c.body for c in server.calls] == [
            {"lora_name": "arpo-v1", "lora_path": str(v1)},
            {"lora_name": "arpo-v2", "lora_path": str(v2)},
            {"lora_name": "arpo-v1"},
        ]
        assert sorted(p.name for p in v2.iterdir()) == ["adapter_config.json", "adapter_model.safetensors"]

        publisher.publish(FolderAdapter(3.0), version=7)
        assert server.routes()[3:] == ["POST /v1/load_lora_adapter", "POST /v1/unload_lora_adapter"]
        assert server.bodies("/v1/unload_lora_adapter")[-1] == {"lora_name": "arpo-v2"}
        assert publisher.model_name == "arpo-v7"
        assert sorted(p.name for p in tmp_path.iterdir()) == ["lora-v000002", "lora-v000007"]  # keep_versions=2


def test_a_404_names_the_route_and_the_environment_variable(tmp_path: Path) -> None:
    with RecordingServer() as server:
        server.respond("/v1/load_lora_adapter", 404, {"detail": "Not Found"})
        publisher = lora(server, tmp_path)
        with pytest.raises(PublishError) as caught:
            publisher.publish(FolderAdapter(1.0), version=1)
        message = str(caught.value)
        assert f"POST {server.base_url}/v1/load_lora_adapter answered 404" in message
        assert "VLLM_ALLOW_RUNTIME_LORA_UPDATING=True" in message
        assert one_sentence(message), message
        assert publisher.model_name is None
        assert server.routes() == ["POST /v1/load_lora_adapter"]


def test_a_server_error_is_passed_on(tmp_path: Path) -> None:
    with RecordingServer() as server:
        body = {"object": "error", "message": "max_lora_rank (8) is smaller than the adapter's rank 16", "code": 400}
        server.respond("/v1/load_lora_adapter", 400, body)
        with pytest.raises(PublishError, match=r"load_lora_adapter answered 400: .*max_lora_rank \(8\) is smaller"):
            lora(server, tmp_path).publish(FolderAdapter(1.0), version=1)


def test_a_partial_load_is_undone(tmp_path: Path) -> None:
    with RecordingServer() as good, RecordingServer() as bad:
        target = WeightTarget("vllm_lora", (good.base_url, bad.base_url), tmp_path)
        publisher = make_publisher(target)
        publisher.publish(FolderAdapter(1.0), version=1)
        bad.respond("/v1/load_lora_adapter", 500, "Internal Server Error")
        with pytest.raises(PublishError, match=rf"POST {bad.base_url}/v1/load_lora_adapter answered 500"):
            publisher.publish(FolderAdapter(2.0), version=2)
        # every server stays on arpo-v1: the good one unloads the arpo-v2 it took
        assert publisher.model_name == "arpo-v1"
        assert good.routes() == ["POST /v1/load_lora_adapter"] * 2 + ["POST /v1/unload_lora_adapter"]
        assert good.bodies("/v1/unload_lora_adapter") == [{"lora_name": "arpo-v2"}]
        assert bad.routes() == ["POST /v1/load_lora_adapter"] * 2


def test_an_unreachable_server_is_named(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    publisher = make_publisher(WeightTarget("vllm_lora", (url,), tmp_path), timeout_s=5)
    with pytest.raises(PublishError, match=rf"cannot reach the inference server at {url} \(POST /v1/load_lora_adapter"):
        publisher.publish(FolderAdapter(1.0), version=1)


def test_bad_sources(tmp_path: Path) -> None:
    class Empty:
        def save_adapter(self, folder: Path) -> None:
            return None

    with RecordingServer() as server:
        publisher = lora(server, tmp_path)
        with pytest.raises(TypeError, match="the vllm_lora publisher loads a LoRA adapter, not list"):
            publisher.publish([[("w", torch.zeros(1))]], version=1)
        with pytest.raises(PublishError, match=r"wrote no adapter_config\.json"):
            publisher.publish(Empty(), version=1)
        assert server.calls == [] and list(tmp_path.iterdir()) == []  # the temporary folder is gone too


def test_a_peft_model(tmp_path: Path) -> None:
    peft = pytest.importorskip("peft")
    from transformers import AutoModelForCausalLM

    from arpo_backends.models.tiny import build_tiny_model

    model = AutoModelForCausalLM.from_pretrained(build_tiny_model(), dtype=torch.float32)
    model = peft.get_peft_model(model, peft.LoraConfig(r=2, target_modules=["q_proj", "v_proj"]))
    with RecordingServer() as server:
        lora(server, tmp_path, lora_name_prefix="policy").publish(PeftAdapter(model), version=3)
        assert server.bodies("/v1/load_lora_adapter") == [
            {"lora_name": "policy-v3", "lora_path": str(tmp_path / "lora-v000003")}
        ]
    config = json.loads((tmp_path / "lora-v000003" / "adapter_config.json").read_text())
    assert config["r"] == 2 and sorted(config["target_modules"]) == ["q_proj", "v_proj"]
    assert (tmp_path / "lora-v000003" / "adapter_model.safetensors").is_file()
