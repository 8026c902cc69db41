"""The FastAPI app: vLLM 0.33's OpenAI-compatible routes over the batched CPU engine.

Routes (bodies in ``protocol``): ``POST /v1/completions``, ``POST /v1/chat/completions``, ``GET /v1/models``,
``GET /health``, ``POST /tokenize``, ``POST /detokenize``, ``POST /reset_prefix_cache`` — as vLLM — and
``POST /v1/load_weights`` ``{"path": folder, "weight_version"?: int}``, arpo's full-weight reload. Not vLLM's
``/update_weights``: that route takes an NCCL ``update_info`` after ``/init_weight_transfer_engine``; a route with
the same name but another body would fail confusingly against either server. The name follows vLLM's
``/v1/load_lora_adapter``.

Deviations from vLLM: ``/health`` answers 200 with ``{"status", "weight_version", "running", "waiting",
"decode_steps", "decoded_tokens"}`` and, with a prefix cache, its ``prefix_cache_*`` counters (vLLM: an empty
200); responses and model cards add ``weight_version``; chat completions return tool calls as text in ``content``
(no tool parser; ``tool_choice`` ``"auto"``/``"none"`` only); no streaming, no ``echo`` (both refused with a 400).
A client that disconnects aborts its sequences, as in vLLM.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from arpo_backends.serve.chat import render_chat
from arpo_backends.serve.engine import Engine, Sequence
from arpo_backends.serve.errors import APIError, bad_request, error_response
from arpo_backends.serve.params import check_token_ids, gen_params, max_tokens_for, refuse_unsupported
from arpo_backends.serve.protocol import (
    ChatCompletionRequest,
    CompletionRequest,
    DetokenizeRequest,
    LoadWeightsRequest,
    TokenizeChatRequest,
    TokenizeCompletionRequest,
)
from arpo_backends.serve.responses import TokenText, chat_response, completion_response
from arpo_backends.serve.scheduler import EngineFailedError, Scheduler, describe
from arpo_backends.serve.weights import WeightLoadError

__all__ = ["build_app"]


def build_app(engine: Engine, served_model_names: list[str], *, root: str | None = None) -> FastAPI:
    """The app serving ``engine`` under ``served_model_names`` (the first is reported in responses)."""
    scheduler = Scheduler(engine)
    tokenizer = engine.tokenizer
    name = served_model_names[0]
    created = int(time.time())
    token_text = TokenText(lambda ids: str(tokenizer.decode(ids)))

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        async with anyio.create_task_group() as tg:
            tg.start_soon(scheduler.run)
            yield
            tg.cancel_scope.cancel()

    app = FastAPI(title="arpo CPU inference server", lifespan=lifespan)
    app.state.scheduler = scheduler

    @app.exception_handler(APIError)
    async def _api_error(_: Request, err: APIError) -> JSONResponse:
        return error_response(err.message, err.status, err.param)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, err: RequestValidationError) -> JSONResponse:
        return error_response("Invalid request: " + _describe(err.errors()), 400)

    def check_model(model: str | None) -> None:
        if model is not None and model not in served_model_names:
            raise APIError(f"The model `{model}` does not exist.", status=404, param="model")

    async def run(raw: Request, seqs: list[Sequence]) -> list[Sequence] | None:
        """Generate, or give up (and abort the sequences) when the client disconnects (then None)."""
        result: list[Sequence] | None = None
        failure: str | None = None

        async def watch_disconnect(scope: anyio.CancelScope) -> None:
            while (await raw.receive())["type"] != "http.disconnect":
                pass
            scope.cancel()

        async with anyio.create_task_group() as tg:
            tg.start_soon(watch_disconnect, tg.cancel_scope)
            try:
                result = await scheduler.generate(seqs)
            except EngineFailedError as err:
                failure = str(err)
            tg.cancel_scope.cancel()
        if failure is not None:
            raise APIError(failure, status=500)
        return result

    def encode_prompts(req: CompletionRequest) -> list[list[int]]:
        prompt = req.prompt
        if prompt is None or prompt == "" or prompt == []:
            raise bad_request("Either prompt or prompt_embeds must be provided and non-empty.", "prompt")
        if isinstance(prompt, str):
            batch: list[Any] = [prompt]
        elif isinstance(prompt[0], int):
            batch = [prompt]
        else:
            batch = list(prompt)
        ids = []
        for item in batch:
            if isinstance(item, str):
                item = tokenizer.encode(item, add_special_tokens=req.add_special_tokens)
            if not item:
                raise bad_request("The prompt (or one of the batch's prompts) is empty.", "prompt")
            check_token_ids(item, engine.vocab_size, "the prompt")
            ids.append(list(item))
        return ids

    @app.post("/v1/completions")
    async def completions(req: CompletionRequest, raw: Request) -> Any:
        check_model(req.model)
        refuse_unsupported(req)
        prompts = encode_prompts(req)
        seqs: list[Sequence] = []
        for ids in prompts:
            requested = 16 if req.max_tokens is None else req.max_tokens  # vLLM's default for completions
            max_tokens = max_tokens_for(requested, len(ids), engine.max_model_len)
            params = gen_params(req, max_tokens=max_tokens, logprobs=req.logprobs, vocab_size=engine.vocab_size)
            seqs += [Sequence(ids, params, choice_index=j) for j in range(req.n)]
        done = await run(raw, seqs)
        if done is None:
            return JSONResponse({}, status_code=499)
        body = completion_response(
            name,
            done,
            sum(len(p) for p in prompts),
            text=token_text,
            return_token_ids=bool(req.return_token_ids),
            as_id=bool(req.return_tokens_as_token_ids),
        )
        return JSONResponse(body)  # plain JSON types already: skips FastAPI's encoder (ms per logprobs response)

    @app.post("/v1/chat/completions")
    async def chat_completions(req: ChatCompletionRequest, raw: Request) -> Any:
        check_model(req.model)
        refuse_unsupported(req)
        if req.tool_choice not in (None, "none", "auto"):
            raise bad_request(
                f"tool_choice={req.tool_choice!r} is not supported by the arpo CPU server (it does not constrain "
                "decoding); use 'auto' or 'none' and parse the tool call from the message text.",
                "tool_choice",
            )
        if req.top_logprobs and not req.logprobs:
            raise bad_request("when using `top_logprobs`, `logprobs` must be set to true.", "top_logprobs")
        ids = render_chat(tokenizer, req)
        check_token_ids(ids, engine.vocab_size, "the prompt")
        requested = req.max_completion_tokens if req.max_completion_tokens is not None else req.max_tokens
        max_tokens = max_tokens_for(requested, len(ids), engine.max_model_len)
        logprobs = (req.top_logprobs or 0) if req.logprobs else None
        params = gen_params(req, max_tokens=max_tokens, logprobs=logprobs, vocab_size=engine.vocab_size)
        done = await run(raw, [Sequence(ids, params, choice_index=j) for j in range(req.n)])
        if done is None:
            return JSONResponse({}, status_code=499)
        body = chat_response(
            name,
            done,
            ids,
            text=token_text,
            return_token_ids=bool(req.return_token_ids),
            as_id=bool(req.return_tokens_as_token_ids),
        )
        return JSONResponse(body)

    @app.post("/tokenize")
    async def tokenize(raw: Request) -> Any:
        body = await _json_object(raw)
        req: TokenizeChatRequest | TokenizeCompletionRequest
        if "messages" in body:
            req = TokenizeChatRequest.model_validate(body)
            check_model(req.model)
            ids = render_chat(tokenizer, req)
        else:
            req = TokenizeCompletionRequest.model_validate(body)
            check_model(req.model)
            ids = list(tokenizer.encode(req.prompt, add_special_tokens=req.add_special_tokens))
        strs = tokenizer.convert_ids_to_tokens(ids) if req.return_token_strs else None
        return {"count": len(ids), "max_model_len": engine.max_model_len, "tokens": ids, "token_strs": strs}

    @app.post("/detokenize")
    async def detokenize(req: DetokenizeRequest) -> Any:
        check_model(req.model)
        check_token_ids(req.tokens, engine.vocab_size, "tokens")
        return {"prompt": tokenizer.decode(req.tokens)}

    @app.get("/v1/models")
    async def models() -> Any:
        cards = [
            {
                "id": served,
                "object": "model",
                "created": created,
                "owned_by": "arpo",
                "root": root or served,
                "parent": None,
                "max_model_len": engine.max_model_len,
                "permission": [],
                "weight_version": scheduler.weight_version,
                "vocab_size": engine.vocab_size,  # arpo's extension: |V| for the entropy normalisation
            }
            for served in served_model_names
        ]
        return {"object": "list", "data": cards}

    @app.get("/health")
    async def health() -> Any:
        return {"status": "ok", **describe(scheduler)}

    @app.post("/reset_prefix_cache")
    async def reset_prefix_cache() -> Any:
        return {"success": scheduler.reset_prefix_cache()}

    @app.post("/v1/load_weights")
    async def load(req: LoadWeightsRequest) -> Any:
        try:
            version = await scheduler.load_weights(req.path, req.weight_version)
        except WeightLoadError as err:
            raise bad_request(str(err), "path") from None
        return {"status": "ok", "weight_version": version}

    @app.exception_handler(ValidationError)
    async def _invalid_body(_: Request, err: ValidationError) -> JSONResponse:
        """Pydantic errors raised inside a handler (``/tokenize`` parses its body itself) are 400s too."""
        return error_response("Invalid request: " + _describe(err.errors()), 400)

    return app


async def _json_object(raw: Request) -> dict[str, Any]:
    try:
        body = await raw.json()
    except ValueError:
        raise bad_request("The request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object.")
    return body


def _describe(errors: Any) -> str:
    """One line per bad field; of a union's alternatives, the most specific complaint (not "wrong type")."""
    by_field: dict[str, list[Any]] = {}
    for e in errors:
        loc = [str(p) for p in e.get("loc", ()) if p != "body"]
        by_field.setdefault(loc[0] if loc else "body", []).append(e)
    parts = []
    for errs in list(by_field.values())[:5]:
        specific = [e for e in errs if not str(e.get("type", "")).endswith("_type")] or errs
        e = specific[0]
        where = ".".join(str(p) for p in e.get("loc", ()) if p != "body" and "[" not in str(p))
        parts.append(f"{where}: {e.get('msg')} (got {e.get('input')!r})")
    return "; ".join(parts)
