"""Rollout engine overhead: 1,000 concurrent trajectories of 4 tool turns against fixed-latency fakes.

    .venv/bin/python bench/rollout.py [--groups 125] [--m 8] [--gen-ms 50] [--tool-ms 20]

An in-process endpoint answers every generation request after ``--gen-ms`` (a canned segment: 4 tool calls,
then an answer) and a fake tool answers after ``--tool-ms``. With unlimited concurrency, the ideal wall time is
the critical path of one trajectory: 5 generations + 4 tool calls. Printed, measured in the same run:

* wall ÷ critical path (goal ≤ 1.05): how much the engine's own work and scheduling stretch the run;
* engine CPU per turn (µs): process CPU time ÷ generation requests, the fakes doing no work of their own.

GRPO sampling (N = M) keeps every trajectory's critical path identical. An ARPO branch starts once its parent's
post-result segment is generated (the decision needs its entropy) and then generates that segment again itself,
so a branch of depth d (a branch of a branch …) has a critical path d generations longer; the ARPO row divides
by the deepest chain's path.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Sequence

import anyio

from arpo_core.config import ArpoConfig, load_config
from arpo_core.runtime.engine import FinishedGroup, PromptGroup, RolloutEngine
from arpo_core.runtime.inference import Completion, SamplingParams
from arpo_core.testing import FakeToolClient
from arpo_core.toolcalls import TagProtocol

RESULT = 1
TOP = tuple(math.log(p) for p in (0.5, 0.2, 0.1, 0.1, 0.05))


class CannedClient:
    """Answers after a fixed latency with a canned segment: a python call until 4 results, then an answer."""

    name = "canned"

    def __init__(self, latency_s: float) -> None:
        self.latency_s = latency_s
        self.requests = 0

    async def complete(self, prompt_token_ids: Sequence[int], params: SamplingParams) -> Completion:
        self.requests += 1
        await anyio.sleep(self.latency_s)
        calls = prompt_token_ids.count(RESULT)
        ids = (5, 6, 7, 8, 9, 10, 11, 12)
        if calls < 4:
            text = f"<think>step</think><python>print({calls})</python>"
            return Completion(ids, text, (-0.7,) * 8, (TOP,) * 8, "stop", "</python>")
        return Completion(ids, "<think>done</think><answer>\\boxed{4}</answer>", (-0.7,) * 8, (TOP,) * 8, "stop")


class MarkerTokenizer:
    async def encode(self, text: str) -> list[int]:
        return [2, 3, RESULT]

    async def decode(self, token_ids: Sequence[int]) -> str:
        return ""


def make_config(groups: int, m: int, n: int) -> ArpoConfig:
    return load_config(
        overrides=[
            f"algo.branching.budget={m}",
            f"algo.branching.global_samples={n}",
            "algo.branching.call_limit=4",
            "algo.entropy.vocab_size=1000",
            "rollout.max_response_tokens=1000",
            f"rollout.max_inflight_requests={groups * m * 2}",
            f"rollout.max_inflight_tools={groups * m * 2}",
            f"rollout.max_groups_in_flight={groups}",
        ]
    )


def branch_depth(group: FinishedGroup) -> int:
    """Longest chain of branch-of-branch in a group: each level starts one generation later than its parent."""
    records = {r.index: r for r in group.tree.records}
    deepest = 0
    for r in records.values():
        depth, cur = 0, r
        while cur.parent is not None:
            depth, cur = depth + 1, records[cur.parent]
        deepest = max(deepest, depth)
    return deepest


async def run_once(groups: int, m: int, n: int, gen_s: float, tool_s: float) -> tuple[float, float, int, int, int]:
    async def tool(args: object) -> str:
        await anyio.sleep(tool_s)
        return "ok"

    client = CannedClient(gen_s)
    engine = RolloutEngine(
        [client], MarkerTokenizer(), FakeToolClient({"python": tool}), TagProtocol(), make_config(groups, m, n),
        vocab_size=1000,
    )  # fmt: skip
    send, receive = anyio.create_memory_object_stream[FinishedGroup](max_buffer_size=groups)
    prompts = [PromptGroup(f"q{i}", (7, 8, i)) for i in range(groups)]
    wall0, cpu0 = time.perf_counter(), time.process_time()
    async with anyio.create_task_group() as tg:
        tg.start_soon(engine.run, prompts, send)
        async with receive:
            finished = [g async for g in receive]
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    trajectories = sum(len(g.tree) for g in finished)
    return wall, cpu, client.requests, trajectories, max(branch_depth(g) for g in finished)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", type=int, default=125)
    parser.add_argument("--m", type=int, default=8)
    parser.add_argument("--gen-ms", type=float, default=50.0)
    parser.add_argument("--tool-ms", type=float, default=20.0)
    args = parser.parse_args()
    gen_s, tool_s = args.gen_ms / 1000, args.tool_ms / 1000
    critical = 5 * gen_s + 4 * tool_s
    print(
        f"critical path of one trajectory: 5 × {args.gen_ms:g} ms + 4 × {args.tool_ms:g} ms = {critical * 1000:.0f} ms"
    )
    header = f"{'mode':18} {'trajectories':>12} {'critical ms':>12} {'wall ms':>9} {'wall/critical':>14}"
    print(header + f" {'engine CPU µs/turn':>19}")
    for label, n in (("GRPO (N = M)", args.m), ("ARPO (N = M/2)", args.m // 2)):
        wall, cpu, requests, trajectories, depth = anyio.run(run_once, args.groups, args.m, n, gen_s, tool_s)
        path = critical + depth * gen_s  # a branch of depth d starts d generations later than a root
        print(
            f"{label:18} {trajectories:>12} {path * 1000:>12.0f} {wall * 1000:>9.0f} {wall / path:>14.3f} "
            f"{cpu / requests * 1e6:>19.0f}"
        )


if __name__ == "__main__":
    main()
