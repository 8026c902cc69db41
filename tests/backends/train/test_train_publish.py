"""Trainers publish their weights after a step: to the real CPU server (full weights, 2 ranks gathering shards)
and to vLLM's LoRA route (a recording server), the adapter being what peft loads back."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import torch
from tests.backends.train.conftest import launch

from arpo_backends.publish.testing import RecordingServer
from arpo_backends.serve.testing import serve_in_thread

pytestmark = pytest.mark.slow

PROMPT = [5, 17, 42, 99, 7, 250]


def _served_logprobs(base_url: str) -> tuple[list[float], int]:
    body = {"model": "tiny", "prompt": PROMPT, "max_tokens": 1, "temperature": 0, "logprobs": 5}
    req = urllib.request.Request(
        base_url + "/v1/completions", json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        choice = json.loads(resp.read())["choices"][0]
    with urllib.request.urlopen(base_url + "/health", timeout=30) as resp:
        version = int(json.loads(resp.read())["weight_version"])
    return sorted(choice["logprobs"]["top_logprobs"][0].values(), reverse=True), version


def _local_logprobs(folder: Path) -> list[float]:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    with torch.no_grad():
        logits = model(torch.tensor([PROMPT])).logits[0, -1]
    return sorted(torch.log_softmax(logits, -1).topk(5).values.tolist(), reverse=True)


@pytest.mark.parametrize("backend", ["fsdp", "deepspeed"])
def test_two_ranks_publish_full_weights_to_the_cpu_server(tmp_path: Path, backend: str) -> None:
    config: dict[str, Any] = {"model": "tiny", "backend": backend, "optim": {"lr": 1e-2}}
    if backend == "deepspeed":
        config["deepspeed"] = {"zero_stage": 3}
    with serve_in_thread("tiny") as server:
        before, version = _served_logprobs(server.base_url)
        assert version == 0
        export = tmp_path / "export"
        publish = {"kind": "cpu_server", "urls": [server.base_url + "/v1"], "directory": str(tmp_path / "pub")}
        run = launch(tmp_path, "run", {"config": config, "steps": 2, "publish": publish, "export": str(export)}, 2)
        after, version = _served_logprobs(server.base_url)
    assert version == 2
    assert [r["version"] for r in map(json.loads, (run.out / "publish.jsonl").read_text().splitlines())] == [1, 2]
    assert after != pytest.approx(before, abs=1e-4)  # the step moved the served policy
    assert after == pytest.approx(_local_logprobs(export), abs=1e-4)  # ...to exactly the trainer's weights


def test_lora_run_hot_loads_adapters_that_peft_reads_back(tmp_path: Path) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from arpo_backends.models.tiny import build_tiny_model

    config = {"model": "tiny", "backend": "fsdp", "optim": {"lr": 1e-2}, "lora": {"rank": 4, "alpha": 8}}
    directory = tmp_path / "adapters"
    with RecordingServer() as server:
        publish = {"kind": "vllm_lora", "urls": [server.base_url + "/v1"], "directory": str(directory)}
        run = launch(tmp_path, "run", {"config": config, "steps": 2, "publish": publish}, nproc=2)
        routes = server.routes()
        loads = server.bodies("/v1/load_lora_adapter")
    assert routes == ["POST /v1/load_lora_adapter", "POST /v1/load_lora_adapter", "POST /v1/unload_lora_adapter"]
    assert [b["lora_name"] for b in loads] == ["arpo-v1", "arpo-v2"]
    records = [json.loads(line) for line in (run.out / "publish.jsonl").read_text().splitlines()]
    assert [r["model_name"] for r in records] == ["arpo-v1", "arpo-v2"]

    base = AutoModelForCausalLM.from_pretrained(build_tiny_model(), dtype=torch.float32)
    merged = PeftModel.from_pretrained(base, loads[-1]["lora_path"]).merge_and_unload().state_dict()
    for name, total in run.weights.items():  # the trainer's own merged weights after step 2
        assert float(merged[name].double().sum()) == pytest.approx(total, rel=1e-5, abs=1e-5), name
