"""Chat episodes for hosted-model evaluation: tag protocol and function calling, through real request shapes."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import httpx2
import pytest

from arpo_core.algo.rewards import compute_reward
from arpo_core.runtime.chat import ChatReply, OpenAIChatClient, run_episode
from arpo_core.testing import FakeToolClient

pytestmark = pytest.mark.anyio


class Scripted:
    """Replies in order; records what it was sent."""

    name = "scripted"

    def __init__(self, replies: list[ChatReply]) -> None:
        self.replies = replies
        self.sent: list[dict[str, Any]] = []

    async def chat(
        self, messages: Sequence[Mapping[str, Any]], *, max_tokens: int, temperature: float,
        stop: Sequence[str] = (), tools: Sequence[Mapping[str, Any]] = (), continue_final: bool = False,
    ) -> ChatReply:  # fmt: skip
        self.sent.append({
            "messages": [dict(m) for m in messages], "stop": list(stop), "tools": list(tools),
            "continue_final": continue_final,
        })  # fmt: skip
        return self.replies.pop(0)


async def test_tag_protocol_episode_puts_back_the_stop_string_and_scores() -> None:
    tools = FakeToolClient({"python": lambda a: "42\n", "search": lambda a: "Page 1: ..."})
    client = Scripted(
        [
            ChatReply("<think>compute</think><python>print(6*7)"),  # the API dropped "</python>"
            ChatReply("<think>so 42</think><answer>\\boxed{42}</answer>"),
        ]
    )
    ep = await run_episode(client, [{"role": "user", "content": "6*7?"}], tools, protocol="tags")
    assert ep.tool_calls == 1 and tools.calls == [("python", {"code": "print(6*7)"})]
    assert "<python>print(6*7)</python> <result>\n42\n\n</result>" in ep.transcript
    assert client.sent[0]["stop"] == ["</python>", "</search>"]
    assert client.sent[1]["messages"][-1]["role"] == "user"  # the result came back as a user message
    assert compute_reward(ep.transcript, "42").score == pytest.approx(1.0)


async def test_inline_tag_protocol_continues_the_assistant_turn_as_training_does() -> None:
    tools = FakeToolClient({"python": lambda a: "42\n"})
    client = Scripted(
        [
            ChatReply("<think>compute</think><python>print(6*7)"),
            ChatReply("<answer>\\boxed{42}</answer>"),
        ]
    )
    question = [{"role": "user", "content": "6*7?"}]
    ep = await run_episode(client, question, tools, protocol="tags-inline")
    first = "<think>compute</think><python>print(6*7)</python> <result>\n42\n\n</result>"
    assert ep.transcript == first + "<answer>\\boxed{42}</answer>"
    assert client.sent[0]["messages"] == question and client.sent[0]["continue_final"] is False
    # the second request continues one assistant message holding the call and its result (no user turn)
    assert client.sent[1]["messages"] == [*question, {"role": "assistant", "content": first}]
    assert client.sent[1]["continue_final"] is True and client.sent[1]["stop"] == ["</python>", "</search>"]
    assert ep.messages[-1] == {"role": "assistant", "content": ep.transcript}
    assert compute_reward(ep.transcript, "42").score == pytest.approx(1.0)


async def test_unknown_episode_protocol_is_one_sentence() -> None:
    with pytest.raises(ValueError, match="protocol 'xml' is not one of tags, tags-inline, functions"):
        await run_episode(Scripted([]), [{"role": "user", "content": "q"}], None, protocol="xml")  # type: ignore[arg-type]


async def test_function_calling_episode_and_call_limit() -> None:
    tools = FakeToolClient({"python": lambda a: "3"})
    call = ("c1", "python", {"code": "print(1+2)"})
    client = Scripted([ChatReply("", (call,)), ChatReply("", (call,)), ChatReply("The answer is \\boxed{3}")])
    ep = await run_episode(client, [{"role": "user", "content": "1+2?"}], tools, protocol="functions", call_limit=1)
    assert ep.tool_calls == 1  # the second call hit the limit and ended the episode
    assert client.sent[0]["tools"][0]["function"]["name"] == "python"
    tool_msg = client.sent[1]["messages"][-1]
    assert tool_msg == {"role": "tool", "tool_call_id": "c1", "content": "3"}


async def test_openai_chat_client_request_and_tool_calls() -> None:
    seen: list[dict[str, Any]] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append(json.loads(request.content))
        message = {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "search", "arguments": '{"query": "x"}'}}
        ]}  # fmt: skip
        return httpx2.Response(200, json={
            "id": "c", "object": "chat.completion", "created": 0, "model": "m",
            "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls"}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12},
        })  # fmt: skip

    client = OpenAIChatClient(
        "http://api.test/v1", "m", api_key="k", http_client=httpx2.AsyncClient(transport=httpx2.MockTransport(handler))
    )
    reply = await client.chat(
        [{"role": "user", "content": "q"}], max_tokens=10, temperature=0.0, stop=["a", "b", "c", "d", "e"]
    )
    assert reply.tool_calls == (("call_1", "search", {"query": "x"}),)
    assert (reply.prompt_tokens, reply.completion_tokens, reply.finish_reason) == (5, 7, "tool_calls")
    assert seen[0]["stop"] == ["a", "b", "c", "d"] and seen[0]["max_tokens"] == 10
    assert "continue_final_message" not in seen[0]
    await client.chat([{"role": "assistant", "content": "a"}], max_tokens=1, temperature=0.0, continue_final=True)
    assert (seen[1]["continue_final_message"], seen[1]["add_generation_prompt"]) == (True, False)  # vLLM's fields


async def test_openai_chat_client_closes_its_connections_when_used_as_a_context() -> None:
    http = httpx2.AsyncClient(transport=httpx2.MockTransport(lambda request: httpx2.Response(503)))
    async with OpenAIChatClient("http://api.test/v1", "m", api_key="k", http_client=http) as client:
        assert not http.is_closed
    assert client is not None and http.is_closed
