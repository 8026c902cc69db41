"""Cold-start demonstrations of the default task: maximum reward, the real tools' output, the rollout's layout."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from arpo_core.algo.rewards import RewardConfig, compute_reward, make_reward_function
from arpo_core.data.samples import Sample
from arpo_core.toolcalls.tags import TagProtocol
from arpo_tools.python_tool.config import PythonToolConfig
from arpo_tools.python_tool.server import build_server as build_python_server
from arpo_tools.search.server import build_server as build_search_server
from arpo_tools.tasks.default import default_task
from arpo_tools.tasks.demos import (
    SEARCH_TOP_K,
    DemoTools,
    assistant_text,
    build_demo,
    demo_length_summary,
    demo_rows,
    format_result,
    search_config,
    write_demos,
)

PROTOCOL = TagProtocol()
SMOLLM2_TOKENIZER = Path.home() / ".cache" / "arpo" / "models" / "smollm2-135m-instruct" / "tokenizer.json"


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("demo-index")


@pytest.fixture(scope="module")
def tools(cache: Path) -> Iterator[DemoTools]:
    with DemoTools(search_config(cache_dir=cache)) as opened:
        yield opened


@pytest.fixture(scope="module")
def samples() -> list[Sample]:
    return default_task() + default_task(split="test")


@pytest.fixture(scope="module")
def rows(samples: list[Sample], tools: DemoTools) -> list[dict[str, Any]]:
    return [build_demo(s, tools) for s in samples]


def segments(text: str) -> list[tuple[str, str | None, str | None]]:
    """The assistant text cut as a rollout makes it: (generated text, the call's closing tag, the inserted result)."""
    out: list[tuple[str, str | None, str | None]] = []
    position = 0
    while (opening := text.find(" <result>\n", position)) >= 0:
        closing = text.index("\n</result>", opening) + len("\n</result>")
        generated = text[position:opening]
        stop = next(tag for tag in PROTOCOL.stop_sequences if generated.endswith(tag))
        out.append((generated, stop, text[opening:closing]))
        position = closing
    out.append((text[position:], None, None))
    return out


def test_every_demo_gets_the_maximum_reward(samples: list[Sample], rows: list[dict[str, Any]]) -> None:
    reward = make_reward_function(RewardConfig())  # the reward the RL run uses
    for sample, row in zip(samples, rows, strict=True):
        text = row["messages"][-1]["content"]
        result = reward(text, sample.ground_truth)
        assert result == compute_reward(text, sample.ground_truth)
        assert result.format_ok and result.f1 == 1.0 and result.em == 1.0, (sample.id, result.format_reason)
        tools = {call["tool"] for call in sample.extra["calls"]}
        assert result.tools_used == tools
        assert result.score == pytest.approx(1.1 if tools == {"search", "python"} else 1.0)


def test_rows_are_conversations_of_the_sample(samples: list[Sample], rows: list[dict[str, Any]]) -> None:
    for sample, row in zip(samples, rows, strict=True):
        assert row["id"] == sample.id and row["kind"] == sample.extra["kind"]
        assert row["messages"][:-1] == [dict(m) for m in sample.messages]
        assert row["messages"][-1]["role"] == "assistant"
        json.dumps(row)


def test_demos_follow_the_rollout_layout(samples: list[Sample], rows: list[dict[str, Any]]) -> None:
    """Each generated piece ends on a tool's closing tag, the parser reads the planned call from it, and the
    result block is exactly what the rollout inserts after it."""
    for sample, row in zip(samples, rows, strict=True):
        parts = segments(row["messages"][-1]["content"])
        calls = sample.extra["calls"]
        assert len(parts) == len(calls) + 1
        for (generated, stop, result), call in zip(parts, calls, strict=False):
            turn = PROTOCOL.parse(generated, stop=stop)
            assert not turn.errors and len(turn.calls) == 1
            argument = call["query"] if call["tool"] == "search" else call["code"]
            assert (turn.calls[0].name, dict(turn.calls[0].arguments)) == (
                call["tool"],
                {PROTOCOL.tools[call["tool"]]: argument},
            )
            assert result is not None
            assert result == PROTOCOL.format_result(result[len(" <result>\n") : -len("\n</result>")])
        final, stop, _ = parts[-1]
        assert stop is None and PROTOCOL.parse(final).has_answer and not PROTOCOL.parse(final).calls
        assert final.endswith(f"<answer>The answer is \\boxed{{{sample.ground_truth[0]}}}.</answer>")


def tool_outputs(rows: list[dict[str, Any]], samples: list[Sample], tool: str) -> list[tuple[str, str]]:
    """(argument, the text inside the demo's result block) of every call of ``tool``."""
    out = []
    for sample, row in zip(samples, rows, strict=True):
        parts = segments(row["messages"][-1]["content"])
        for (_, _, result), call in zip(parts, sample.extra["calls"], strict=False):
            if call["tool"] == tool:
                assert result is not None
                argument = call["query"] if tool == "search" else call["code"]
                out.append((argument, result[len(" <result>\n") : -len("\n</result>")]))
    return out


@pytest.mark.anyio
async def test_search_results_are_what_the_search_tool_returns(
    samples: list[Sample], rows: list[dict[str, Any]], cache: Path
) -> None:
    outputs = tool_outputs(rows, samples, "search")
    assert len(outputs) == (64 + 12) + (64 + 12) + 2 * (48 + 12)  # search, both, chain (two searches each)
    server = build_search_server(search_config(cache_dir=cache))
    async with Client(server) as client:
        for query, shown in outputs:
            result = await client.call_tool("search", {"query": query})  # the server's default top_k
            assert not result.is_error
            assert result.content[0].type == "text"
            assert result.content[0].text == shown, query
    assert SEARCH_TOP_K == 1 and all(text.startswith("Page 1: ") and "\nPage 2" not in text for _, text in outputs)


@pytest.mark.anyio
async def test_python_results_are_what_the_python_tool_returns(
    samples: list[Sample], rows: list[dict[str, Any]]
) -> None:
    outputs = tool_outputs(rows, samples, "python")
    assert len(outputs) == (24 + 12) + (64 + 12)  # python, both
    config = PythonToolConfig(timeout_s=10, cpu_seconds=10, max_concurrent=2, prefork=1)
    async with Client(build_python_server(config)) as client:  # the real sandboxed tool
        for code, shown in outputs:
            result = await client.call_tool("python", {"code": code})
            assert not result.is_error
            assert result.content[0].type == "text"
            assert result.content[0].text == shown, code


def test_python_results_are_what_a_plain_interpreter_prints(samples: list[Sample], rows: list[dict[str, Any]]) -> None:
    for code, shown in tool_outputs(rows, samples, "python")[::8]:  # the tool drops the last newline
        printed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
        assert printed == shown + "\n"


def test_demos_are_short(rows: list[dict[str, Any]]) -> None:
    summary = demo_length_summary(rows)
    assert {kind: s["count"] for kind, s in summary.items()} == {"python": 36, "search": 76, "both": 76, "chain": 60}
    assert summary["python"]["max"] <= 200 and summary["search"]["max"] <= 450 and summary["both"]["max"] <= 520
    assert summary["chain"]["max"] <= 800
    if SMOLLM2_TOKENIZER.is_file():  # the model of the default run: one call or two under 200 tokens, two hops 260
        tokenizers = pytest.importorskip("tokenizers")
        tokenizer = tokenizers.Tokenizer.from_file(str(SMOLLM2_TOKENIZER))
        for row in rows:
            tokens = len(tokenizer.encode(row["messages"][-1]["content"]).ids)
            assert tokens <= (260 if row["kind"] == "chain" else 200), row["id"]


def test_write_demos_and_the_sft_reader(tmp_path: Path, tools: DemoTools) -> None:
    path = write_demos(tmp_path / "out" / "demos.jsonl", 12, 0, tools=tools)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == demo_rows(12, 0, tools=tools)
    assert [json.loads(line)["id"] for line in lines] == [s.id for s in default_task(12, 0)]
    sft = pytest.importorskip("arpo_backends.sft.data")
    demos = sft.load_demonstrations(path)
    assert len(demos) == 12 and all(d.format == "messages" and d.trained == (False, False, True) for d in demos)
    for demo in demos:
        text = demo.messages[-1]["content"]
        spans = sft.result_spans(text)
        assert [text[a:b] for a, b in spans] == [r for _, _, r in segments(text) if r is not None]


def test_tools_and_texts_match_core(tools: DemoTools) -> None:
    assert format_result("x") == PROTOCOL.format_result("x") == " <result>\nx\n</result>"
    assert tools.python("print(6 * 7)") == "42"
    assert tools.python("x = 1") == "(no output)"
    assert tools.search("Stugaenas population").startswith("Page 1: Stugaenas — ")
    with pytest.raises(ValueError, match="no tool 'calculator'"):
        tools.call("calculator", "1 + 1")
    with pytest.raises(ValueError, match="provider='local'"):
        DemoTools(search_config(provider="replay", replay_file=Path("cache.json")))
    sample = default_task(1)[0]
    assert assistant_text(sample, tools) == build_demo(sample, tools)["messages"][-1]["content"]
    bare = Sample("x", sample.messages, ("1",))
    with pytest.raises(ValueError, match="no extra\\['calls'\\]"):
        assistant_text(bare, tools)
