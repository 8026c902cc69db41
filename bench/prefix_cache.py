"""The CPU server's prefix cache on the workload it is for: multi-turn tool-using episodes, as `arpo train` evaluates.

    .venv/bin/python bench/prefix_cache.py [--model runs/default/sft/model] [--questions 48] [--rounds 2]
                                           [--cache-tokens 16384]

For each round, twice — prefix cache off (the baseline), then on (``arpo serve --prefix-cache-tokens``) — arpo's CPU
server is started as ``arpo train`` starts it and ``arpo eval`` runs the first ``--questions`` questions of
``builtin:default`` against it with arpo's own python and search tools (one search result per query, as the
embedded default sets them), as `arpo train` evaluates: greedy,
``tags-inline`` (each tool result inside the model's own turn, so every turn re-sends the conversation so far),
16 episodes in flight, 96 tokens per model turn, 2 tool calls per episode. Printed per run: the evaluation's wall
time, accuracy, and the server's counters (prompt tokens served from the cache); then the ratio
baseline ÷ cached wall time (higher is better) per round and its median, and how many transcripts differ between
the two (a cached prefill differs in the last float bits, which can flip a near-tie of greedy decoding).

The model should follow the tool protocol, or the episodes have one turn each and nothing to reuse: the default is
the SFT model `make demo` leaves in runs/default/sft/model (`arpo train --steps 0` makes one in ~5 minutes).
The machines are shared and noisy: the two runs of a round are back to back, and only their ratio is compared.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

EVAL_FLAGS = [
    "--dataset", "builtin:default", "--protocol", "tags-inline", "--concurrency", "16", "--max-tokens", "96",
    "--call-limit", "2", "--k", "1",
]  # fmt: skip


def _health(url: str) -> dict[str, Any]:
    root = url.removesuffix("/v1")
    with urllib.request.urlopen(root + "/health", timeout=30) as reply:
        return dict(json.loads(reply.read()))


def _tools(folder: Path) -> Path:
    """arpo's own tool servers (``builtin_mcp_config``) with the embedded default's one search result per query."""
    from arpo_tools.cli import builtin_mcp_config

    config = builtin_mcp_config()
    config["mcpServers"]["search"]["args"] += ["-o", "top_k=1"]
    path = folder / "mcp.json"
    path.write_text(json.dumps(config, indent=1))
    return path


def one_run(model: str, questions: int, cache_tokens: int, folder: Path) -> dict[str, Any]:
    from arpo_backends.cli.server import start_cpu_server

    tag = f"cache{cache_tokens}"
    with start_cpu_server(model, folder / f"{tag}.log", prefix_cache_tokens=cache_tokens) as server:
        out = folder / f"{tag}-{time.monotonic_ns()}.json"
        cmd = [
            sys.executable, "-m", "arpo_core.cli", "eval", "--model", server.model_name, "--base-url", server.url,
            "--limit", str(questions), "--out", str(out), "--tools", str(_tools(folder)), *EVAL_FLAGS,
        ]  # fmt: skip
        began = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True)
        seconds = time.perf_counter() - began
        if done.returncode != 0:
            raise SystemExit(f"arpo eval failed ({done.returncode}): {done.stderr.strip()[-800:]}")
        health = _health(server.url)
    report = json.loads(out.read_text())
    return {
        "seconds": seconds,
        "accuracy": report["summary"]["pass@1"],
        "tool_calls": report["summary"]["tool_calls_per_episode"],
        "transcripts": [q["transcripts"][0] for q in report["questions"]],
        "reused": health.get("prefix_cache_reused_tokens", 0),
        "hits": health.get("prefix_cache_hits", 0),
        "lookups": health.get("prefix_cache_lookups", 0),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="runs/default/sft/model", help="a model that follows the tool protocol")
    parser.add_argument("--questions", type=int, default=48)
    parser.add_argument("--rounds", type=int, default=2, help="(off, on) pairs")
    parser.add_argument("--cache-tokens", type=int, default=16384, help="the cached server's --prefix-cache-tokens")
    args = parser.parse_args()
    if not Path(args.model).is_dir():
        raise SystemExit(
            f"--model {args.model!r} is not a folder; run `make demo` (it leaves runs/default/sft/model) or pass "
            "the folder of a model trained to call the tools."
        )
    folder = Path(tempfile.mkdtemp(prefix="arpo-bench-prefix-"))
    print(f"model {args.model}, {args.questions} questions, logs in {folder}", flush=True)
    ratios, differing = [], []
    for r in range(args.rounds):
        base = one_run(args.model, args.questions, 0, folder)
        cached = one_run(args.model, args.questions, args.cache_tokens, folder)
        for name, run in (("off", base), ("on", cached)):
            extra = (
                f", {run['hits']}/{run['lookups']} prompts hit, {run['reused']} tokens reused" if run["lookups"] else ""
            )
            print(
                f"  round {r + 1} cache {name:3s}: {run['seconds']:6.1f} s, accuracy {run['accuracy']:.3f}, "
                f"{run['tool_calls']:.2f} tool calls/question{extra}",
                flush=True,
            )
        ratios.append(base["seconds"] / cached["seconds"])
        differing.append(sum(a != b for a, b in zip(base["transcripts"], cached["transcripts"], strict=True)))
    print()
    print(f"evaluation wall time, cache off ÷ cache on: {' '.join(f'{x:.2f}' for x in ratios)} "
          f"(median {statistics.median(ratios):.2f}×)")  # fmt: skip
    print(f"transcripts that differ between off and on: {differing} of {args.questions} per round")


if __name__ == "__main__":
    main()
