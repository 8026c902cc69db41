"""arpo's CPU inference server (``arpo serve``) under the two loads ``arpo train`` puts on it, in one run.

    .venv/bin/python bench/serve.py [--runs 3] [--baseline-requests 4] [--skip-baseline] [--only eval|rollout]
                                    [--threads N|auto] [--prefill-batch-tokens N]

The server is started as ``arpo train`` starts it (``start_cpu_server``: a child process, SmolLM2-135M-Instruct,
float32, torch's default threads; ``--threads`` / ``--prefill-batch-tokens`` pass the server's opt-in options
through ``ARPO_SERVE_THREADS`` / ``ARPO_SERVE_PREFILL_BATCH_TOKENS``), then:

(a) eval: the default run's evaluation: 16 chat episodes of ``builtin:default`` (test split) through
    ``OpenAIChatClient`` / ``evaluate`` — greedy, max_tokens 96, 16 episodes in flight.
(b) rollout: 16 concurrent ``/v1/completions`` requests with token-id prompts (the same chat prompts, rendered),
    ``logprobs=10``, temperature 1, max_tokens 64, ``return_token_ids``, one seed each, ``ignore_eos`` (so every
    request decodes all 64 tokens).

Each is measured ``--runs`` times (the median is printed) and against a baseline in the same run: the first
``--baseline-requests`` of the same requests sent one at a time (what a server without batching achieves), as
decode tokens/s; the ratio column is concurrent ÷ sequential tokens/s (higher is better). Decode tokens and steps
come from the server's ``/health`` counters (the first token of each request comes from its prefill and is not
counted). ``outputs`` is a hash of everything generated (eval transcripts, rollout token ids): on an idle machine it
repeats run to run. It can change when the machine is busy: requests then reach the engine in other steps, the
decoding batches have other row counts, and float32 products of other shapes differ in their last bits (as in any
batching server, vLLM's included).

The machines are shared and noisy: compare numbers of one run, or medians of alternated runs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio

MODEL = "smollm2-135m-instruct"
EPISODES = 16
EVAL_MAX_TOKENS = 96
ROLLOUT_MAX_TOKENS = 64
ROLLOUT_LOGPROBS = 10


@dataclass
class Measure:
    seconds: float
    decoded: int  # tokens from decoding steps (/health)
    steps: int  # batched decoding forwards (/health)
    digest: str

    @property
    def tokens_per_s(self) -> float:
        return self.decoded / self.seconds if self.seconds > 0 else 0.0


def _health(root: str) -> dict[str, Any]:
    with urllib.request.urlopen(root + "/health", timeout=30) as reply:
        return dict(json.loads(reply.read()))


async def _measured(root: str, work: Any) -> Measure:
    before = _health(root)
    started = time.perf_counter()
    digest = await work()
    seconds = time.perf_counter() - started
    after = _health(root)
    return Measure(
        seconds,
        after["decoded_tokens"] - before["decoded_tokens"],
        after["decode_steps"] - before["decode_steps"],
        digest,
    )


def _hash(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:12]


async def run_eval(url: str, samples: list[Any], concurrency: int) -> str:
    from arpo_core.runtime.chat import OpenAIChatClient
    from arpo_core.runtime.evaluate import evaluate

    async with OpenAIChatClient(url, "policy") as client:
        report = await evaluate(
            client, samples, None, model="policy", dataset="bench", concurrency=concurrency,
            max_tokens=EVAL_MAX_TOKENS, temperature=0.0,
        )  # fmt: skip
    failed = report.summary()["failed_episodes"]
    if failed:
        raise RuntimeError(f"{failed:.0f} evaluation episodes failed: {[q.errors for q in report.questions][:2]}")
    return _hash([q.transcripts for q in report.questions])


async def run_rollouts(url: str, prompts: list[list[int]], concurrency: int) -> str:
    import openai

    results: list[Any] = [None] * len(prompts)
    limiter = anyio.CapacityLimiter(concurrency)
    async with openai.AsyncOpenAI(base_url=url, api_key="x", max_retries=0, timeout=600) as client:

        async def one(i: int) -> None:
            async with limiter:
                reply = await client.completions.create(
                    model="policy",
                    prompt=prompts[i],
                    max_tokens=ROLLOUT_MAX_TOKENS,
                    temperature=1.0,
                    logprobs=ROLLOUT_LOGPROBS,
                    seed=1000 + i,
                    extra_body={"return_token_ids": True, "ignore_eos": True},
                )
            choice = reply.choices[0]
            results[i] = choice.token_ids
            assert len(choice.logprobs.top_logprobs) == len(choice.token_ids)

        async with anyio.create_task_group() as tg:
            for i in range(len(prompts)):
                tg.start_soon(one, i)
    return _hash(results)


def _prompts(samples: list[Any]) -> list[list[int]]:
    from transformers import AutoTokenizer

    from arpo_backends.models import resolve_model

    tokenizer = AutoTokenizer.from_pretrained(resolve_model(MODEL))
    encoded = [tokenizer.apply_chat_template(s.messages, add_generation_prompt=True, tokenize=True) for s in samples]
    return [list(e["input_ids"] if hasattr(e, "keys") else e) for e in encoded]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=1, help="repeats of each concurrent measurement (median shown)")
    parser.add_argument("--baseline-requests", type=int, default=4, help="requests in the sequential baseline")
    parser.add_argument("--skip-baseline", action="store_true", help="no sequential baseline (faster)")
    parser.add_argument("--threads", default=None, help="the server's --threads: a count or 'auto' (default: torch's)")
    parser.add_argument(
        "--prefill-batch-tokens", type=int, default=None, help="the server's --prefill-batch-tokens (default: 0)"
    )
    parser.add_argument("--only", choices=("eval", "rollout"), default=None, help="run one of the two loads")
    args = parser.parse_args()

    from arpo_backends.cli.server import server_root, start_cpu_server
    from arpo_core.data.builtin import builtin_samples

    samples = list(builtin_samples("builtin:default", EPISODES, split="test"))
    prompts = _prompts(samples)
    k = max(1, min(args.baseline_requests, EPISODES))
    if args.threads is not None:  # the server reads its options from the environment too
        os.environ["ARPO_SERVE_THREADS"] = str(args.threads)
    if args.prefill_batch_tokens is not None:
        os.environ["ARPO_SERVE_PREFILL_BATCH_TOKENS"] = str(args.prefill_batch_tokens)
    log = Path(tempfile.mkdtemp(prefix="arpo-bench-serve-")) / "server.log"
    started = time.perf_counter()
    with start_cpu_server(MODEL, log) as server:
        root = server_root(server.url)
        print(f"server up in {time.perf_counter() - started:.1f} s ({server.url}, log {log})", flush=True)
        loads = {
            "eval": (lambda n, c: lambda: run_eval(server.url, samples[:n], c)),
            "rollout": (lambda n, c: lambda: run_rollouts(server.url, prompts[:n], c)),
        }
        rows = []
        for name, make in loads.items():
            if args.only and name != args.only:
                continue

            async def measure(n: int, c: int, make: Any = make) -> Measure:
                return await _measured(root, make(n, c))

            anyio.run(measure, 1, 1)  # warm-up: first-call costs (allocations, tokenizer caches)
            concurrent = []
            for r in range(args.runs):
                m = anyio.run(measure, EPISODES, EPISODES)
                concurrent.append(m)
                print(
                    f"  {name} run {r + 1}: {m.seconds:.1f} s, {m.decoded} decode tokens in {m.steps} steps "
                    f"({m.tokens_per_s:.1f} tok/s, {m.seconds / max(m.steps, 1) * 1e3:.0f} ms/step) "
                    f"outputs {m.digest}",
                    flush=True,
                )
            baseline = None if args.skip_baseline else anyio.run(measure, k, 1)
            if baseline is not None:
                rate = baseline.tokens_per_s
                print(f"  {name} sequential ({k} requests): {baseline.seconds:.1f} s, {rate:.1f} tok/s", flush=True)
            rows.append((name, concurrent, baseline))

    print()
    header = ("load", "seconds", "tok/s", "steps", "ms/step", "seq tok/s", "ratio")
    print("{:8s} {:>8s} {:>7s} {:>6s} {:>8s} {:>10s} {:>6s}  outputs".format(*header))
    for name, concurrent, baseline in rows:
        seconds = statistics.median(m.seconds for m in concurrent)
        rate = statistics.median(m.tokens_per_s for m in concurrent)
        steps = statistics.median(m.steps for m in concurrent)
        digests = sorted({m.digest for m in concurrent})
        seq = f"{baseline.tokens_per_s:10.1f}" if baseline else f"{'-':>10s}"
        ratio = f"{rate / baseline.tokens_per_s:6.2f}" if baseline and baseline.tokens_per_s else f"{'-':>6s}"
        print(
            f"{name:8s} {seconds:8.1f} {rate:7.1f} {steps:6.0f} {seconds / max(steps, 1) * 1e3:8.0f} {seq} {ratio}  "
            f"{','.join(digests)}"
        )
    print(f"(median of {args.runs} run(s); ratio = concurrent ÷ sequential decode tokens/s; {sys.platform})")


if __name__ == "__main__":
    main()
