"""``arpo demo``: the whole ARPO rollout algorithm on a scripted toy policy, against GRPO at equal budget.

No model and no server: ``ScriptedPolicy`` stands in for the inference server (its entropy rises after tool
results, as ARPO observed in real models). Everything else is the real code — scheduler, entropy monitor,
rollout trees, rewards, GRPO advantages and soft/hard attribution — so the numbers show the mechanism: at the
same budget M, branches reuse their parent's prefix and its tool results, so ARPO executes fewer tool calls.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from arpo_core.algo.advantages import group_advantages_from_config
from arpo_core.algo.attribution import attribute
from arpo_core.algo.branching import BranchScheduler, group_seed
from arpo_core.algo.entropy import make_estimator
from arpo_core.algo.entropy_monitor import EntropyMonitor
from arpo_core.algo.rewards import make_reward_function
from arpo_core.config import ArpoConfig
from arpo_core.simulation import GroupExpansion, expand_group
from arpo_core.testing import ScriptedPolicy, echo_tool
from arpo_core.tree import RolloutTree, SegmentKind, write_jsonl

__all__ = ["DemoSummary", "render_tree", "run_demo"]


@dataclass(frozen=True)
class DemoSummary:
    name: str
    groups: int
    trajectories: int
    branches: int
    tool_calls: int
    mean_reward: float
    unique_tokens: int
    expanded_tokens: int
    positive_decisions: int
    decisions: int


def _run(name: str, config: ArpoConfig, prompts: int, policy: ScriptedPolicy) -> tuple[DemoSummary, list[RolloutTree]]:
    algo = config.algo
    reward = make_reward_function(algo.reward)
    trees: list[RolloutTree] = []
    tool_calls = branches = unique = expanded = positives = decisions = 0
    rewards: list[float] = []
    for q in range(prompts):
        group = f"demo-{q}"
        out: GroupExpansion = expand_group(
            group,
            [3, 4, 5, q + 6],
            policy,
            echo_tool,
            BranchScheduler(algo.branching, seed=group_seed(config.seed, group)),
            EntropyMonitor(
                make_estimator(algo.entropy.estimator, algo.entropy.vocab_size or policy.vocab_size),
                algo.entropy.window,
                algo.entropy.reduction,
            ),
            max_response_tokens=512,
            metadata={"ground_truth": policy.gold},
        )
        tree = out.tree
        for traj in tree.trajectories():
            result = reward(traj.text, policy.gold)
            tree.set_reward(traj.index, result.score)
        scores = [r.reward or 0.0 for r in tree.records]
        adv = group_advantages_from_config(scores, algo.advantage)
        attribute(tree, adv, algo.advantage.attribution)  # exercised: the trainer's input
        rewards.extend(scores)
        tool_calls += out.tool_calls
        branches += sum(r.origin == "branch" for r in tree.records)
        u, e = tree.token_counts()
        unique += u
        expanded += e
        positives += sum(bool(d.children) for d in out.decisions)
        decisions += len(out.decisions)
        trees.append(tree)
    summary = DemoSummary(
        name,
        prompts,
        sum(len(t) for t in trees),
        branches,
        tool_calls,
        float(np.mean(rewards)),
        unique,
        expanded,
        positives,
        decisions,
    )
    return summary, trees


def run_demo(
    prompts: int = 32, budget: int = 8, global_samples: int = 4, seed: int = 0
) -> tuple[DemoSummary, DemoSummary, list[RolloutTree]]:
    """ARPO (N < M) and GRPO (N = M) on the same scripted prompts; returns both summaries and ARPO's trees."""
    policy = ScriptedPolicy(seed=seed)
    base = ArpoConfig(seed=seed)
    branching = base.algo.branching.model_copy(update={"budget": budget, "global_samples": global_samples})
    arpo_cfg = base.model_copy(update={"algo": base.algo.model_copy(update={"branching": branching})})
    grpo_branching = branching.model_copy(update={"global_samples": budget})
    grpo_cfg = base.model_copy(update={"algo": base.algo.model_copy(update={"branching": grpo_branching})})
    arpo, trees = _run("ARPO", arpo_cfg, prompts, policy)
    grpo, _ = _run("GRPO", grpo_cfg, prompts, policy)
    return arpo, grpo, trees


def render_tree(tree: RolloutTree) -> list[str]:
    """An ASCII picture of a group: one line per segment, with its entropy window and the trajectories ending there."""
    ends = {r.leaf_id: r for r in tree.records}
    lines = [f"group {tree.group_id}: {len(tree)} trajectories"]

    def walk(node: int, prefix: str, last: bool) -> None:
        seg = tree.segment(node)
        if node == 0:
            label = f"prompt ({len(seg.token_ids)} tokens)"
            child_prefix = ""
        else:
            kind = "gen " if seg.kind is SegmentKind.GENERATED else "tool"
            w = f"  W={seg.entropy:.2f}" if seg.entropy is not None and seg.kind is SegmentKind.GENERATED else ""
            end = ""
            if node in ends:
                r = ends[node]
                end = f"  → trajectory {r.index} ({r.origin}, reward {r.reward:+.2f})"
            label = f"{'└─ ' if last else '├─ '}{kind} {len(seg.token_ids):>3} tok{w}{end}"
            child_prefix = prefix + ("   " if last else "│  ")
        lines.append(prefix + label)
        kids = tree.children(node)
        for i, kid in enumerate(kids):
            walk(kid, child_prefix, i == len(kids) - 1)

    walk(0, "", True)
    return lines


def write_demo_trees(trees: list[RolloutTree], out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "arpo_trees.jsonl"
    write_jsonl(path, trees)
    return path
