"""Walk through ARPO's rollout decisions for one prompt group, step by step.

Drives the real scheduler, entropy monitor and attribution with the shipped scripted policy (no model needed)
and prints each branch decision: ΔH, P_t, the uniform draw, and what it spawned; then the per-token
advantages of one shared prefix under soft and hard attribution.

    python examples/branching_walkthrough.py
"""

from __future__ import annotations

from arpo_core.algo.advantages import group_advantages
from arpo_core.algo.attribution import packed_view
from arpo_core.algo.branching import BranchScheduler
from arpo_core.algo.entropy import TopKTruncated
from arpo_core.algo.entropy_monitor import EntropyMonitor
from arpo_core.config import BranchingConfig
from arpo_core.simulation import expand_group
from arpo_core.testing import ScriptedPolicy, echo_tool


def main() -> None:
    policy = ScriptedPolicy(seed=1)
    config = BranchingConfig(budget=8, global_samples=4)  # paper: M = 16, N = 8; halved to keep the output short
    out = expand_group(
        "walkthrough",
        prompt_token_ids=[3, 4, 5],
        policy=policy,
        tools=echo_tool,
        scheduler=BranchScheduler(config, seed=1),
        monitor=EntropyMonitor(TopKTruncated(policy.vocab_size), window=20, reduction="sum"),
    )
    print(f"H_initial per root trajectory: { {k: round(v, 3) for k, v in out.monitor.initial_windows.items()} }")
    for d in out.decisions:
        draw = "-" if d.draw is None else f"{d.draw:.3f}"
        spawned = [c.index for c in d.children]
        print(
            f"trajectory {d.trajectory} after tool result {d.tool_step}: ΔH = {d.delta_entropy:+.3f}, "
            f"P = {d.probability:.3f}, u = {draw} -> {d.reason} {spawned if spawned else ''}"
        )
    tree = out.tree
    origins = [r.origin for r in tree.records]
    print(f"{len(tree)} trajectories: {origins.count('global')} global, {origins.count('branch')} branch, "
          f"{origins.count('fill')} fill; {out.tool_calls} tool calls executed")  # fmt: skip
    rewards = [1.0 if "\\boxed{42}" in t.text else 0.0 for t in tree.trajectories()]
    adv = group_advantages(rewards)
    shared = [p for p in packed_view(tree, adv, "soft") if p.multiplicity > 1 and p.trainable]
    if shared:
        soft = shared[0]
        hard = next(p for p in packed_view(tree, adv, "hard") if p.node_id == soft.node_id)
        print(f"segment {soft.node_id} is shared by trajectories {list(soft.trajectories)}:")
        print(f"  soft advantages {[round(a, 3) for a in soft.advantages]}")
        print(f"  hard advantages {[round(a, 3) for a in hard.advantages]}")


if __name__ == "__main__":
    main()
