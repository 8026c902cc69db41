"""POST /v1/load_weights swaps the served weights in place between batches and bumps the weight version."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

torch = pytest.importorskip("torch")
openai = pytest.importorskip("openai")
pytest.importorskip("fastapi")

from safetensors.torch import save_file  # noqa: E402
from transformers import AutoModelForCausalLM  # noqa: E402

from arpo_backends.serve.testing import RunningServer, serve_in_thread  # noqa: E402

PROMPT = [5, 6, 7, 8, 9, 10]


@pytest.fixture
def server() -> Iterator[RunningServer]:
    """A server of its own: these tests change its weights."""
    with serve_in_thread("tiny") as running:
        yield running


def post(server: RunningServer, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        server.base_url + path, data=json.dumps(body).encode(), headers={"content-type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


async def sample(server: RunningServer, max_tokens: int = 8) -> Any:
    async with openai.AsyncOpenAI(base_url=server.base_url + "/v1", api_key="x", max_retries=0) as c:
        return await c.completions.create(
            model=server.model,
            prompt=PROMPT,
            max_tokens=max_tokens,
            seed=0,
            logprobs=1,
            extra_body={"return_token_ids": True, "ignore_eos": True},
        )


def perturbed_copy(server: RunningServer, folder: Path) -> Path:
    model = AutoModelForCausalLM.from_pretrained(server.folder, dtype=torch.float32)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.05 * torch.randn(param.shape, generator=generator))
    model.save_pretrained(folder)
    return folder


@pytest.mark.anyio
async def test_reload_changes_the_logprobs_and_bumps_the_version(server: RunningServer, tmp_path: Path) -> None:
    before = await sample(server)
    assert before.weight_version == 0
    status, reply = post(server, "/v1/load_weights", {"path": str(perturbed_copy(server, tmp_path / "step1"))})
    assert status == 200 and reply["weight_version"] == 1
    after = await sample(server)
    assert after.weight_version == 1 and server.get("/health")["weight_version"] == 1
    assert after.choices[0].logprobs.token_logprobs != before.choices[0].logprobs.token_logprobs

    # publishing the original weights again restores the original samples exactly; the version is the caller's
    status, reply = post(server, "/v1/load_weights", {"path": str(server.folder), "weight_version": 7})
    assert status == 200 and reply["weight_version"] == 7
    restored = await sample(server)
    assert restored.choices[0].token_ids == before.choices[0].token_ids
    assert restored.choices[0].logprobs.token_logprobs == before.choices[0].logprobs.token_logprobs
    models = server.get("/v1/models")
    assert models["data"][0]["weight_version"] == 7


@pytest.mark.anyio
async def test_a_bad_folder_is_refused_and_leaves_the_weights(server: RunningServer, tmp_path: Path) -> None:
    before = await sample(server)
    status, reply = post(server, "/v1/load_weights", {"path": str(tmp_path / "missing")})
    assert status == 400 and "is not a folder" in reply["error"]["message"]
    (tmp_path / "empty").mkdir()
    status, reply = post(server, "/v1/load_weights", {"path": str(tmp_path / "empty")})
    assert status == 400 and "no *.safetensors" in reply["error"]["message"]
    (tmp_path / "wrong").mkdir()
    save_file({"model.embed_tokens.weight": torch.zeros(3, 3)}, str(tmp_path / "wrong" / "model.safetensors"))
    status, reply = post(server, "/v1/load_weights", {"path": str(tmp_path / "wrong")})
    assert status == 400 and "wrong shape" in reply["error"]["message"]
    (tmp_path / "partial").mkdir()
    state = AutoModelForCausalLM.from_pretrained(server.folder).state_dict()
    partial = {k: v.contiguous() for k, v in state.items() if "layers.1." not in k and k != "lm_head.weight"}
    save_file(partial, str(tmp_path / "partial" / "model.safetensors"))
    status, reply = post(server, "/v1/load_weights", {"path": str(tmp_path / "partial")})
    assert status == 400 and "lacks" in reply["error"]["message"] and "layers.1." in reply["error"]["message"]
    after = await sample(server)
    assert after.weight_version == 0
    assert after.choices[0].logprobs.token_logprobs == before.choices[0].logprobs.token_logprobs


@pytest.mark.anyio
async def test_reload_waits_for_the_running_batch(server: RunningServer, tmp_path: Path) -> None:
    folder = perturbed_copy(server, tmp_path / "next")
    baseline = await sample(server, max_tokens=300)
    done: dict[str, float] = {}
    results: dict[str, Any] = {}

    async def long_request() -> None:
        results["long"] = await sample(server, max_tokens=300)
        done["long"] = anyio.current_time()

    async with anyio.create_task_group() as tg:
        tg.start_soon(long_request)
        while server.get("/health")["running"] == 0:  # noqa: ASYNC110 (polls the server: the long request is in)
            await anyio.sleep(0.005)
        results["reload"] = await anyio.to_thread.run_sync(post, server, "/v1/load_weights", {"path": str(folder)})
        done["reload"] = anyio.current_time()
    assert results["reload"] == (200, {"status": "ok", "weight_version": 1})
    assert done["reload"] >= done["long"]
    long = results["long"].choices[0]
    assert results["long"].weight_version == 0
    assert long.token_ids == baseline.choices[0].token_ids  # every token from the old weights
    assert long.logprobs.token_logprobs == baseline.choices[0].logprobs.token_logprobs
    assert (await sample(server)).weight_version == 1
