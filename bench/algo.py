"""CPU cost of ARPO's algorithm hot paths, against the reference code's way of doing the same in one run.

    .venv/bin/python bench/algo.py [--repeat 5]

* entropy window of one segment (20 positions × top-10 logprobs, |V| = 151,936): arpo's ``EntropyMonitor``
  vs the reference's pure-Python loop (``math.exp`` per entry, summed, divided by ln|V|) — same numbers;
* one branch decision (``BranchScheduler.decide``, keyed draw) vs a bare ``random.random()`` coin;
* soft and hard attribution of a 16-trajectory group vs building the same per-token arrays by hand.

Times are medians of ``--repeat`` runs; the ratio column is arpo ÷ baseline (lower is better). These costs
are per segment or per group, to be set against a generation call of milliseconds to seconds.
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import time
from collections.abc import Callable

import numpy as np

from arpo_core.algo.advantages import group_advantages
from arpo_core.algo.attribution import attribute
from arpo_core.algo.branching import BranchScheduler
from arpo_core.algo.entropy import TopKTruncated
from arpo_core.algo.entropy_monitor import EntropyMonitor
from arpo_core.config import BranchingConfig
from arpo_core.simulation import expand_group
from arpo_core.testing import ScriptedPolicy, echo_tool

V = 151_936  # Qwen2.5's vocabulary


def per_call_us(fn: Callable[[], object], calls: int, repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        samples.append((time.perf_counter() - start) / calls * 1e6)
    return statistics.median(samples)


def reference_window(rows: list[tuple[float, ...]]) -> float:
    total = 0.0
    for logprobs in rows[:20]:
        probs = [math.exp(lp) for lp in logprobs]
        total += -sum(p * lp for p, lp in zip(probs, logprobs, strict=True))
    return total / math.log(V)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    segment = [tuple(float(x) for x in np.log(rng.dirichlet(np.ones(10)) * 0.9)) for _ in range(20)]
    monitor = EntropyMonitor(TopKTruncated(V), window=20, reduction="sum")
    assert abs(monitor.measure(segment) - reference_window(segment)) < 1e-12

    rows: list[tuple[str, float, str, float]] = []
    arpo = per_call_us(lambda: monitor.measure(segment), 2000, args.repeat)
    base = per_call_us(lambda: reference_window(segment), 2000, args.repeat)
    rows.append(("entropy window, 20×top-10", arpo, "pure-Python loop (reference)", base))

    config = BranchingConfig(budget=16, global_samples=16, call_limit=10**9)

    def decisions() -> None:
        s = BranchScheduler(config, seed=1)
        s.start()
        for step in range(1, 201):
            s.decide(0, step, 0.1)

    arpo = per_call_us(decisions, 10, args.repeat) / 200
    base = per_call_us(lambda: random.random() < 0.52, 20000, args.repeat)
    rows.append(("branch decision (keyed draw)", arpo, "random.random() coin", base))

    policy = ScriptedPolicy(seed=0)
    tree = expand_group(
        "bench",
        [1, 2, 3],
        policy,
        echo_tool,
        BranchScheduler(BranchingConfig(), seed=0),
        EntropyMonitor(TopKTruncated(policy.vocab_size)),
    ).tree
    adv = group_advantages([float(i % 2) for i in range(len(tree))])

    def by_hand() -> None:
        for traj, a in zip(tree.trajectories(), adv, strict=True):
            mask = traj.loss_mask
            _ = np.where(mask == 1, a, 0.0)

    base = per_call_us(by_hand, 50, args.repeat)
    for mode in ("soft", "hard"):
        arpo = per_call_us(lambda m=mode: attribute(tree, adv, m), 50, args.repeat)  # type: ignore[misc]
        rows.append((f"{mode} attribution, M = 16 group", arpo, "per-trajectory arrays by hand", base))

    print(f"{'operation':34} {'arpo µs':>10}  {'baseline':32} {'base µs':>10} {'ratio':>7}")
    for name, a, base_name, b in rows:
        print(f"{name:34} {a:10.1f}  {base_name:32} {b:10.1f} {a / b:7.2f}")


if __name__ == "__main__":
    main()
