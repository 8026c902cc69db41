"""Chat episodes for hosted models (evaluation): messages in, tools through the same ``ToolClient``.

Hosted APIs take messages, not token ids, so evaluation runs the agent loop in message space:

* ``protocol="tags"`` (ARPO's): the model writes ``<python>…</python>`` / ``<search>…</search>``; generation
  stops on the closing tags (chat APIs drop the stop string, so it is put back), the call is run, and its
  result comes back as ``<result>…</result>`` in a user message; the transcript the reward reads is the
  concatenation, exactly as in training.
* ``protocol="tags-inline"``: the same tags, with each result appended to the assistant's own message and
  generation continuing that message (vLLM's ``continue_final_message``; ``arpo serve`` has it too): one assistant
  turn holding calls and results, exactly the text a training rollout builds. Use it for models trained with arpo
  or the ARPO reference, which learned to continue after ``</result>``, not to answer a user message.
* ``protocol="functions"``: the tools go in the request's ``tools`` list (OpenAI function calling, any
  provider through litellm); calls and results use the API's tool messages.

Clients: ``OpenAIChatClient`` (the official ``openai`` client) and ``LiteLLMChatClient`` (any provider; the
optional ``litellm`` extra). Both retry 429/503 with backoff and nothing else.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import anyio
import openai

from arpo_core.runtime.inference import InferenceError
from arpo_core.runtime.tools import ToolClient, ToolSpec
from arpo_core.toolcalls import TagProtocol

EpisodeProtocol = Literal["tags", "tags-inline", "functions"]
PROTOCOLS: tuple[str, ...] = ("tags", "tags-inline", "functions")

__all__ = [
    "PROTOCOLS",
    "ChatClient",
    "ChatReply",
    "Episode",
    "EpisodeProtocol",
    "LiteLLMChatClient",
    "OpenAIChatClient",
    "run_episode",
]


@dataclass(frozen=True)
class ChatReply:
    content: str
    tool_calls: tuple[tuple[str, str, dict[str, Any]], ...] = ()
    """(call id, function name, arguments) of each function call."""
    finish_reason: str = "stop"
    prompt_tokens: int = 0
    completion_tokens: int = 0


class ChatClient(Protocol):
    name: str

    async def chat(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        max_tokens: int,
        temperature: float,
        stop: Sequence[str] = (),
        tools: Sequence[Mapping[str, Any]] = (),
        continue_final: bool = False,
    ) -> ChatReply:
        """One reply; with ``continue_final`` the last (assistant) message is continued, not answered."""
        ...


def _arguments(raw: Any) -> dict[str, Any]:
    if isinstance(raw, dict):
        return raw
    try:
        value = json.loads(raw or "{}")
    except json.JSONDecodeError:
        return {"__unparsed__": str(raw)}
    return value if isinstance(value, dict) else {"value": value}


def _request(
    model: str, messages: Sequence[Mapping[str, Any]], max_tokens: int, temperature: float,
    stop: Sequence[str], tools: Sequence[Mapping[str, Any]], continue_final: bool = False,
) -> dict[str, Any]:  # fmt: skip
    """The chat-completions body both clients send."""
    body: dict[str, Any] = {
        "model": model,
        "messages": list(messages),
        "max_tokens": max_tokens,
        "temperature": temperature,
    }
    if stop:
        body["stop"] = list(stop)[:4]  # the OpenAI API accepts at most 4 stop strings
    if tools:
        body["tools"] = list(tools)
    if continue_final:  # vLLM's chat-template options (not part of OpenAI's API)
        body["extra_body"] = {"continue_final_message": True, "add_generation_prompt": False}
    return body


def _reply(response: Any) -> ChatReply:
    """A chat-completions response (openai's or litellm's objects, same shape) as a ``ChatReply``."""
    choice = response.choices[0]
    calls = tuple(
        (c.id, c.function.name, _arguments(c.function.arguments))
        for c in (choice.message.tool_calls or [])
        if getattr(c, "function", None) is not None
    )
    usage = getattr(response, "usage", None)
    return ChatReply(
        choice.message.content or "", calls, choice.finish_reason or "stop",
        getattr(usage, "prompt_tokens", 0) or 0, getattr(usage, "completion_tokens", 0) or 0,
    )  # fmt: skip


class OpenAIChatClient:
    """``ChatClient`` over any OpenAI-compatible chat completions endpoint (OpenAI, vLLM, hosted gateways)."""

    def __init__(
        self, base_url: str | None, model: str, *, api_key: str | None = None, timeout: float = 300.0,
        max_attempts: int = 6, http_client: Any = None,
    ) -> None:  # fmt: skip
        self.model = model
        self.name = base_url or "openai"
        self.max_attempts = max_attempts
        self._client = openai.AsyncOpenAI(
            base_url=base_url, api_key=api_key or os.environ.get("OPENAI_API_KEY") or "EMPTY", max_retries=0,
            timeout=timeout, http_client=http_client,
        )  # fmt: skip

    async def chat(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        max_tokens: int,
        temperature: float,
        stop: Sequence[str] = (),
        tools: Sequence[Mapping[str, Any]] = (),
        continue_final: bool = False,
    ) -> ChatReply:
        body = _request(self.model, messages, max_tokens, temperature, stop, tools, continue_final)
        for attempt in range(1, self.max_attempts + 1):
            try:
                response = await self._client.chat.completions.create(**body)
                break
            except openai.APIStatusError as err:
                if err.status_code in (429, 503) and attempt < self.max_attempts:
                    await anyio.sleep(min(0.5 * 2**attempt, 30) * (0.5 + random.random() / 2))
                    continue
                raise InferenceError(f"{self.name} answered {err.status_code}: {err.message}") from None
            except openai.APIConnectionError as err:
                raise InferenceError(f"{self.name} cannot be reached ({type(err).__name__}).") from None
        return _reply(response)

    async def aclose(self) -> None:
        """Close the HTTP connections (do it inside the event loop that used them: later it cannot be done)."""
        await self._client.close()

    async def __aenter__(self) -> OpenAIChatClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class LiteLLMChatClient:
    """``ChatClient`` for any provider litellm knows (``anthropic/…``, ``gemini/…``).

    Needs the optional extra: pip install 'arpo-core[litellm]'."""

    def __init__(self, model: str, *, api_base: str | None = None, timeout: float = 300.0) -> None:
        os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no price-list download at import
        try:
            import litellm
        except ImportError:
            raise ImportError("the litellm client needs litellm: pip install 'arpo-core[litellm]'") from None
        self._litellm = litellm
        self.model = model
        self.name = f"litellm:{model}"
        self.api_base = api_base
        self.timeout = timeout

    async def chat(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        max_tokens: int,
        temperature: float,
        stop: Sequence[str] = (),
        tools: Sequence[Mapping[str, Any]] = (),
        continue_final: bool = False,
    ) -> ChatReply:
        kwargs = _request(self.model, messages, max_tokens, temperature, stop, tools)
        if continue_final:  # litellm forwards unknown fields to OpenAI-compatible providers (hosted vLLM)
            kwargs.update(continue_final_message=True, add_generation_prompt=False)
        kwargs.update(timeout=self.timeout, num_retries=3)
        if self.api_base:
            kwargs["api_base"] = self.api_base
        try:
            response = await self._litellm.acompletion(**kwargs)
        except Exception as err:
            raise InferenceError(f"{self.name} failed: {type(err).__name__}: {err}") from None
        return _reply(response)


@dataclass
class Episode:
    """One answered question: the transcript the reward reads, and what it cost."""

    transcript: str = ""
    final: str = ""
    tool_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str = "stop"
    messages: list[dict[str, Any]] = field(default_factory=list)


async def run_episode(
    client: ChatClient,
    messages: Sequence[Mapping[str, Any]],
    tools: ToolClient | None,
    *,
    protocol: EpisodeProtocol = "tags",
    call_limit: int = 3,
    max_tokens: int = 2048,
    temperature: float = 0.0,
    tool_timeout: float = 120.0,
) -> Episode:
    """Answer one question with at most ``call_limit`` tool calls (a further call ends the episode)."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol {protocol!r} is not one of {', '.join(PROTOCOLS)}.")
    history: list[dict[str, Any]] = [dict(m) for m in messages]
    episode = Episode(messages=history)
    parser = TagProtocol()
    specs: list[ToolSpec] = list(await tools.list_tools()) if tools is not None else []
    schemas = [s.openai_schema() for s in specs] if protocol == "functions" else []
    stop = parser.stop_sequences if protocol != "functions" and tools is not None else ()
    inline = protocol == "tags-inline"
    for _ in range(call_limit + 1):
        continuing = inline and bool(episode.transcript)
        if continuing:
            reply = await client.chat(
                [*history, {"role": "assistant", "content": episode.transcript}], max_tokens=max_tokens,
                temperature=temperature, stop=stop, continue_final=True,
            )  # fmt: skip
        else:
            reply = await client.chat(history, max_tokens=max_tokens, temperature=temperature, stop=stop, tools=schemas)
        episode.prompt_tokens += reply.prompt_tokens
        episode.completion_tokens += reply.completion_tokens
        episode.finish_reason = reply.finish_reason
        if protocol == "functions":
            episode.transcript += reply.content
            episode.final = reply.content
            if not reply.tool_calls or tools is None or episode.tool_calls >= call_limit:
                return episode
            history.append({"role": "assistant", "content": reply.content or None, "tool_calls": [
                {"id": cid, "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}
                for cid, name, args in reply.tool_calls
            ]})  # fmt: skip
            for cid, name, args in reply.tool_calls:
                result = await tools.call_tool(name, args, timeout=tool_timeout)
                episode.tool_calls += 1
                history.append({"role": "tool", "tool_call_id": cid, "content": result.text})
            continue
        text = reply.content
        turn = parser.parse(text)
        if turn.unclosed is not None and not turn.has_calls:  # the API stopped on the closing tag and dropped it
            text += f"</{turn.unclosed}>"
            turn = parser.parse(text)
        episode.transcript += text
        episode.final = text
        if not turn.has_calls or tools is None or episode.tool_calls >= call_limit:
            break
        results = []
        for call in turn.calls:
            results.append((await tools.call_tool(call.name, call.arguments, timeout=tool_timeout)).text)
            episode.tool_calls += 1
        results.extend(e.message for e in turn.errors)
        formatted = "".join(parser.format_result(r) for r in results)
        episode.transcript += formatted
        if not inline:
            history.append({"role": "assistant", "content": text})
            history.append({"role": "user", "content": formatted.strip()})
    if inline:
        history.append({"role": "assistant", "content": episode.transcript})
    return episode
