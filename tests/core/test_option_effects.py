"""Every algorithm option changes what arpo does (issue 14, item 3).

One test per option of ``AlgoConfig`` (entropy, branching, advantage, reward), run end to end where the option is
wired: the ``RolloutEngine`` over the scripted policy (no server) for rollout options, ``make_train_batch`` on the
engine's groups for advantages, the configured reward function for rewards. Each test compares two values of the
option, and checks what happened against numbers computed here by hand (entropy windows from the stored top-k
logprobs, ΔH and P_t, AEPO's N, GRPO advantages, F1 / EM), so it fails if the option stops reaching the code that
uses it. The last tests check that a setting the runtime cannot honour is an error naming the option.
"""

from __future__ import annotations

import math
import statistics
import string
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import anyio
import pytest

from arpo_core.algo.branching import BranchDecision, BranchScheduler
from arpo_core.algo.rewards import RewardConfig, make_reward_function
from arpo_core.config import ArpoConfig, BranchingConfig, ConfigError, load_config
from arpo_core.runtime.engine import FinishedGroup, PromptGroup, RolloutEngine
from arpo_core.runtime.inference import Completion, SamplingParams
from arpo_core.runtime.train_loop import make_train_batch
from arpo_core.testing import FakeToolClient, PolicyInferenceClient, PolicyTokenizer, ScriptedPolicy
from arpo_core.toolcalls import HermesProtocol, TagProtocol, ToolCallParser
from arpo_core.tree import RolloutTree, SegmentKind

V = 512  # the scripted policy's vocabulary
BASE = ["algo.branching.budget=8", "algo.branching.global_samples=4", "rollout.max_response_tokens=300"]


# ---------------------------------------------------------------------------------------------- running the engine


@dataclass
class TopKServer:
    """The scripted policy behind a server that, like vLLM, returns only the ``params.logprobs`` top entries."""

    policy: ScriptedPolicy
    drop_logprobs: bool = False
    """Return no top-k logprobs at all (a hosted API)."""
    requested: list[int | None] = field(default_factory=list)
    name: str = "topk-server"

    def __post_init__(self) -> None:
        self._inner = PolicyInferenceClient(self.policy)

    async def complete(self, prompt_token_ids: Sequence[int], params: SamplingParams) -> Completion:
        self.requested.append(params.logprobs)
        out = await self._inner.complete(prompt_token_ids, params)
        if self.drop_logprobs or params.logprobs is None or out.top_logprobs is None:
            return replace(out, top_logprobs=None)
        return replace(out, top_logprobs=tuple(row[: params.logprobs] for row in out.top_logprobs))


def config(*overrides: str) -> ArpoConfig:
    return load_config(overrides=[*BASE, *overrides])


def rollout(
    cfg: ArpoConfig,
    groups: int = 4,
    *,
    seed: int = 0,
    ground_truth: str = "42",
    server: TopKServer | None = None,
    parser: ToolCallParser | None = None,
    vocab_size: int = V,
) -> list[FinishedGroup]:
    """``groups`` groups expanded one after the other by a ``RolloutEngine`` with the configured reward."""
    policy = ScriptedPolicy(seed=seed)
    engine = RolloutEngine(
        [server or TopKServer(policy)],
        PolicyTokenizer(policy),
        FakeToolClient({"python": lambda args: "42"}),
        parser or TagProtocol(),
        cfg,
        vocab_size=vocab_size,
        reward_fn=make_reward_function(cfg.algo.reward),
    )

    async def main() -> list[FinishedGroup]:
        return [await engine.rollout_group(PromptGroup(f"q{i}", (3, 4, i), ground_truth)) for i in range(groups)]

    return anyio.run(main)


# ---------------------------------------------------------------------------------------------- numbers by hand


def hand_window(
    top: Sequence[Sequence[float]] | None,
    *,
    vocab: int = V,
    window: int = 20,
    reduction: str = "sum",
    tail: bool = False,
) -> float:
    """The entropy window of a segment from its top-k logprobs, written out: Σ or mean over the first ``window``
    tokens of (−Σ_i p_i ln p_i [− r ln(r / (|V| − k))]) / ln|V|."""
    assert top is not None
    values = []
    for row in list(top)[:window]:
        probs = [math.exp(lp) for lp in row]
        h = -sum(p * lp for p, lp in zip(probs, row, strict=True))
        missing = 1.0 - sum(probs)
        if tail and missing > 0:
            h += -missing * math.log(missing / (vocab - len(row)))
        values.append(min(h / math.log(vocab), 1.0) if tail else h / math.log(vocab))
    if not values:
        return 0.0
    return sum(values) if reduction == "sum" else sum(values) / len(values)


def generated_windows(groups: Sequence[FinishedGroup], **how: Any) -> list[tuple[float, float | None]]:
    """(hand window, engine's window) of every generated segment."""
    return [
        (hand_window(seg.top_logprobs, **how), seg.entropy)
        for g in groups
        for seg in g.tree.segments
        if seg.kind is SegmentKind.GENERATED
    ]


def _windows_by_segment(groups: Sequence[FinishedGroup]) -> dict[tuple[str, int, tuple[int, ...]], float]:
    return {
        (g.tree.group_id, seg.parent_id or 0, seg.token_ids): seg.entropy
        for g in groups
        for seg in g.tree.segments
        if seg.kind is SegmentKind.GENERATED and seg.entropy is not None
    }


def decided_segment_window(tree: RolloutTree, d: BranchDecision, **how: Any) -> tuple[float, float]:
    """(W of the segment after tool result ``d.tool_step`` of the deciding trajectory, H_initial of its root)."""
    record = tree.records[d.trajectory]
    segments = tree.trajectory(d.trajectory).segments
    tools = [k for k, s in enumerate(segments) if s.kind is SegmentKind.TOOL]
    after = segments[tools[d.tool_step - 1] + 1]
    assert record.root is not None
    root_first = tree.trajectory(record.root).segments[0]
    return hand_window(after.top_logprobs, **how), hand_window(root_first.top_logprobs, **how)


def hand_n(tree: RolloutTree, budget: int, configured: int, minimum: int = 1) -> int:
    """AEPO's N from the group's first trajectory: int(M·σ(0.5·(H_root − H_tool))) + 1 in [minimum, M], H_root its
    first window, H_tool the window right after its first tool result; the configured N without one."""
    segments = tree.trajectory(0).segments
    h_root = hand_window(segments[0].top_logprobs)
    after_tool = [segments[k + 1] for k, s in enumerate(segments[:-1]) if s.kind is SegmentKind.TOOL]
    if not after_tool:
        return max(minimum, configured)
    gap = h_root - hand_window(after_tool[0].top_logprobs)
    return max(minimum, min(budget, int(budget / (1.0 + math.exp(-0.5 * gap))) + 1))


def origins(group: FinishedGroup) -> list[str]:
    return [r.origin for r in group.tree.records]


# ---------------------------------------------------------------------------------------------- entropy


@pytest.mark.parametrize(
    ("override", "how"),
    [
        ("algo.entropy.estimator=topk_tail", {"tail": True}),
        ("algo.entropy.window=5", {"window": 5}),
        ("algo.entropy.reduction=mean", {"reduction": "mean"}),
        ("algo.entropy.vocab_size=100000", {"vocab": 100_000}),
    ],
    ids=["estimator", "window", "reduction", "vocab_size"],
)
def test_entropy_option_changes_every_measured_window(override: str, how: dict[str, Any]) -> None:
    groups = rollout(config(override), groups=2)
    windows = generated_windows(groups, **how)
    default = generated_windows(groups)  # the same segments measured with the default settings, by hand
    assert all(engine == pytest.approx(hand, rel=1e-9) for hand, engine in windows)
    assert all(abs(a[0] - b[0]) > 1e-6 for a, b in zip(windows, default, strict=True))
    # the branch decisions use those windows: ΔH_t = W(after result t) − W(root's first segment)
    decisions = [(g.tree, d) for g in groups for d in g.decisions]
    assert decisions
    for tree, d in decisions:
        after, initial = decided_segment_window(tree, d, **how)
        assert d.delta_entropy == pytest.approx(after - initial, rel=1e-9, abs=1e-12)


def test_entropy_top_logprobs_is_requested_and_measured() -> None:
    policy = ScriptedPolicy(seed=0)
    three = TopKServer(policy)
    groups = rollout(config("algo.entropy.top_logprobs=3"), groups=2, server=three)
    assert set(three.requested) == {3}
    windows = generated_windows(groups)
    assert all(engine == pytest.approx(hand, rel=1e-9) for hand, engine in windows)
    ten = TopKServer(policy)
    wide = rollout(config(), groups=2, server=ten)
    assert set(ten.requested) == {10}
    # the same segments (same lineage, same tokens) seen with k = 10 carry more of the mass: larger windows
    narrow = _windows_by_segment(groups)
    full = _windows_by_segment(wide)
    common = narrow.keys() & full.keys()
    assert len(common) >= 8 and all(narrow[key] < full[key] for key in common)


# ---------------------------------------------------------------------------------------------- branching


@pytest.mark.parametrize("budget", [5, 7])
def test_branching_budget_is_the_group_size(budget: int) -> None:
    groups = rollout(config(f"algo.branching.budget={budget}", "algo.branching.global_samples=2"), groups=3)
    assert [len(g.tree) for g in groups] == [budget] * 3


@pytest.mark.parametrize("n", [2, 6])
def test_branching_global_samples_are_the_trajectories_from_the_prompt(n: int) -> None:
    groups = rollout(config("algo.branching.budget=6", f"algo.branching.global_samples={n}"), groups=4)
    assert all(origins(g).count("global") == n for g in groups)
    assert all(g.global_samples == n for g in groups)
    branches = sum(origins(g).count("branch") for g in groups)
    assert (branches > 0) == (n < 6)


def _always_branch(*extra: str) -> ArpoConfig:
    """Threshold rule with P_t = α = 1 > τ: every decision with slots left branches."""
    return config(
        "algo.branching.budget=16",
        "algo.branching.global_samples=2",
        "algo.branching.branch_rule=threshold",
        "algo.branching.alpha=1.0",
        "algo.branching.beta=0.0",
        *extra,
    )


@pytest.mark.parametrize("z", [1, 2, 3])
def test_branching_branches_per_decision_is_z(z: int) -> None:
    groups = rollout(_always_branch(f"algo.branching.branches_per_decision={z}"), groups=3)
    sizes: list[int] = []
    for g in groups:
        spawned: dict[tuple[int, int], int] = {}
        for r in g.tree.records:
            if r.origin == "branch":
                assert r.parent is not None
                spawned[(r.parent, r.branch_step)] = spawned.get((r.parent, r.branch_step), 0) + 1
        sizes.extend(spawned.values())
        for d in g.decisions:
            assert len(d.children) == spawned.get((d.trajectory, d.tool_step), 0)
    assert max(sizes) == z  # every decision got Z branches, the last one of a group possibly fewer


def _constant_p(alpha: float, tau: float, rule: str = "threshold", *extra: str) -> ArpoConfig:
    return config(
        "algo.branching.budget=12",
        "algo.branching.global_samples=3",
        f"algo.branching.branch_rule={rule}",
        f"algo.branching.alpha={alpha}",
        "algo.branching.beta=0.0",
        f"algo.branching.tau={tau}",
        *extra,
    )


@pytest.mark.parametrize(("alpha", "branches"), [(0.6, True), (0.4, False)])
def test_branching_alpha_is_the_branch_probability_at_zero_slope(alpha: float, branches: bool) -> None:
    groups = rollout(_constant_p(alpha, 0.5), groups=3)
    decisions = [d for g in groups for d in g.decisions]
    assert decisions and all(d.probability == pytest.approx(alpha) for d in decisions)
    assert all(d.positive is branches for d in decisions if d.reason != "fill_never_branches")
    assert any("branch" in origins(g) for g in groups) is branches


@pytest.mark.parametrize("beta", [1.5, -1.5])
def test_branching_beta_scales_delta_h(beta: float) -> None:
    groups = rollout(
        config(
            "algo.branching.budget=16",
            "algo.branching.global_samples=4",
            "algo.branching.branch_rule=threshold",
            f"algo.branching.beta={beta}",
        ),
        groups=3,
    )
    decided = 0
    for g in groups:
        for d in g.decisions:
            if d.reason == "fill_never_branches":
                continue
            after, initial = decided_segment_window(g.tree, d)
            p = 0.5 + beta * (after - initial)
            assert d.probability == pytest.approx(p, rel=1e-9)
            assert d.positive is (p > 0.5)
            decided += 1
    assert decided


@pytest.mark.parametrize(("tau", "branches"), [(0.4, True), (0.6, False)])
def test_branching_tau_is_the_threshold(tau: float, branches: bool) -> None:
    groups = rollout(_constant_p(0.5, tau), groups=3)
    decisions = [d for g in groups for d in g.decisions if d.reason != "fill_never_branches"]
    assert decisions and all(d.positive is branches and d.draw is None for d in decisions)


def test_branching_branch_rule_chooses_draw_or_threshold() -> None:
    # P_t = 0.5 = τ: the threshold rule (P > τ) never branches; the stochastic one branches on half the draws
    threshold = rollout(_constant_p(0.5, 0.5, "threshold"), groups=4)
    assert not any("branch" in origins(g) for g in threshold)
    stochastic = rollout(_constant_p(0.5, 0.5, "stochastic"), groups=4)
    drawn = [d for g in stochastic for d in g.decisions if d.reason != "fill_never_branches"]
    assert drawn and all(d.draw is not None and d.positive is (d.draw < 0.5) for d in drawn)
    assert {d.positive for d in drawn} == {True, False}


@pytest.mark.parametrize("limit", [1, 3])
def test_branching_call_limit_bounds_tool_calls(limit: int) -> None:
    groups = rollout(config(f"algo.branching.call_limit={limit}"), groups=4)
    calls = [t.num_tool_calls for g in groups for t in g.tree.trajectories()]
    assert max(calls) == limit  # the scripted policy makes up to 3 calls, each with p = 0.7
    ended = [r.finish_reason for g in groups for r in g.tree.records]
    assert ("call_limit" in ended) is (limit < 3)
    assert all(d.tool_step <= limit for g in groups for d in g.decisions)


@pytest.mark.parametrize("penalty", [0.0, 0.5])
def test_branching_consecutive_branch_penalty_damps_a_branching_lineage(penalty: float) -> None:
    # P_t = 0.55·(1 − c·l) against τ = 0.5: with c = 0.5 a lineage that just branched (l = 1) gets 0.275 and rests
    groups = rollout(
        config(
            "algo.branching.budget=16",
            "algo.branching.global_samples=2",
            "algo.branching.branch_rule=threshold",
            "algo.branching.alpha=0.55",
            "algo.branching.beta=0.0",
            f"algo.branching.consecutive_branch_penalty={penalty}",
        ),
        groups=3,
    )
    consecutive = 0
    for g in groups:
        branched = {(d.trajectory, d.tool_step) for d in g.decisions if d.children}
        for d in g.decisions:
            r = g.tree.records[d.trajectory]
            # l by hand: 1 right after this trajectory branched, or at a branch's first decision; else 0
            first_of_branch = r.origin == "branch" and d.tool_step == r.branch_step + 1
            l_hand = 1 if (d.trajectory, d.tool_step - 1) in branched or first_of_branch else 0
            assert d.probability == pytest.approx(0.55 * (1 - penalty * l_hand))
            consecutive += l_hand and bool(d.children)
    assert (consecutive > 0) is (penalty == 0.0)


def test_branching_dynamic_global_samples_sizes_n_per_group() -> None:
    groups = rollout(config("algo.branching.dynamic_global_samples=true"), groups=8)
    sized = [hand_n(g.tree, 8, 4) for g in groups]
    assert [g.global_samples for g in groups] == sized
    assert [origins(g).count("global") for g in groups] == sized
    assert [g.tree.metadata["global_samples"] for g in groups] == sized
    assert all(len(g.tree) == 8 for g in groups)
    assert len(set(sized)) > 1 and any(n != 4 for n in sized)  # N really varies from prompt to prompt
    off = rollout(config(), groups=8)
    assert [g.global_samples for g in off] == [4] * 8 and "global_samples" not in off[0].tree.metadata


def test_branching_dynamic_global_samples_without_a_tool_step_keeps_the_configured_n() -> None:
    # call_limit = 0: the first trajectory ends at its first call, before any post-tool window
    groups = rollout(config("algo.branching.dynamic_global_samples=true", "algo.branching.call_limit=0"), groups=3)
    assert [g.global_samples for g in groups] == [4, 4, 4]
    groups = rollout(
        config(
            "algo.branching.dynamic_global_samples=true",
            "algo.branching.call_limit=0",
            "algo.branching.global_samples=6",
        ),
        groups=3,
    )
    assert [g.global_samples for g in groups] == [6, 6, 6]


def test_branching_dynamic_global_samples_min_bounds_n() -> None:
    free = rollout(config("algo.branching.dynamic_global_samples=true"), groups=8)
    assert min(g.global_samples or 0 for g in free) < 6
    bounded = rollout(
        config("algo.branching.dynamic_global_samples=true", "algo.branching.dynamic_global_samples_min=6"), groups=8
    )
    assert [g.global_samples for g in bounded] == [hand_n(g.tree, 8, 4, minimum=6) for g in bounded]
    assert all((g.global_samples or 0) >= 6 for g in bounded)


# ---------------------------------------------------------------------------------------------- advantages


def _advantage_groups() -> list[FinishedGroup]:
    groups = rollout(config(), groups=4, seed=3)
    assert any(len({r.reward for r in g.tree.records}) > 1 for g in groups)  # rewards differ within a group
    return groups


def _hand_outcome(rewards: list[float], *, normalize: bool = True, ddof: int = 1, eps: float = 1e-6) -> list[float]:
    mean = sum(rewards) / len(rewards)
    if not normalize:
        return [r - mean for r in rewards]
    std = statistics.stdev(rewards) if ddof == 1 else statistics.pstdev(rewards)
    return [(r - mean) / (std + eps) for r in rewards]


def _hand_token_advantages(tree: RolloutTree, outcome: list[float], mode: str) -> list[list[float]]:
    """Per trajectory, per response token: its own Â (soft) or the mean Â of the trajectories through the token's
    segment (hard); 0 on tool results."""
    through: dict[int, list[int]] = {}
    for t in tree.trajectories():
        for s in t.segments:
            through.setdefault(s.node_id, []).append(t.index)
    out = []
    for t in tree.trajectories():
        tokens: list[float] = []
        for s in t.segments:
            if s.kind is SegmentKind.TOOL:
                value = 0.0
            elif mode == "soft":
                value = outcome[t.index]
            else:
                value = sum(outcome[j] for j in through[s.node_id]) / len(through[s.node_id])
            tokens.extend([value] * len(s.token_ids))
        out.append(tokens)
    return out


def _batch_advantages(groups: list[FinishedGroup], *overrides: str) -> list[list[list[float]]]:
    batch = make_train_batch(0, groups, config(*overrides).algo.advantage)
    return [[[float(x) for x in tok.advantages] for tok in group] for group in batch.tokens]


def _rewards(group: FinishedGroup) -> list[float]:
    return [float(r.reward or 0.0) for r in group.tree.records]


@pytest.mark.parametrize("mode", ["soft", "hard"])
def test_advantage_attribution_puts_shared_tokens_on_the_mean(mode: str) -> None:
    groups = _advantage_groups()
    got = _batch_advantages(groups, f"algo.advantage.attribution={mode}")
    for g, per_group in zip(groups, got, strict=True):
        expected = _hand_token_advantages(g.tree, _hand_outcome(_rewards(g)), mode)
        for a, b in zip(per_group, expected, strict=True):
            assert a == pytest.approx(b, rel=1e-9, abs=1e-12)
    other = _batch_advantages(groups, f"algo.advantage.attribution={'hard' if mode == 'soft' else 'soft'}")
    assert got != other  # branches share prefixes, so soft and hard differ on them


@pytest.mark.parametrize(
    ("override", "how"),
    [
        ("algo.advantage.normalize_by_std=false", {"normalize": False}),
        ("algo.advantage.std_unbiased=false", {"ddof": 0}),
        ("algo.advantage.epsilon=0.5", {"eps": 0.5}),
    ],
    ids=["normalize_by_std", "std_unbiased", "epsilon"],
)
def test_advantage_option_changes_the_outcome_advantage(override: str, how: dict[str, Any]) -> None:
    groups = _advantage_groups()
    got = _batch_advantages(groups, override)
    default = _batch_advantages(groups)
    for g, per_group in zip(groups, got, strict=True):
        expected = _hand_token_advantages(g.tree, _hand_outcome(_rewards(g), **how), "soft")
        for a, b in zip(per_group, expected, strict=True):
            assert a == pytest.approx(b, rel=1e-9, abs=1e-12)
    assert got != default


# ---------------------------------------------------------------------------------------------- rewards


def _answer(text: str) -> str | None:
    if "<answer>" not in text:
        return None
    return text.rsplit("\\boxed{", 1)[1].split("}", 1)[0]


def _tokens(text: str) -> list[str]:
    return "".join(c for c in text.lower() if c not in string.punctuation).split()


def _f1(answer: str, gold: str) -> float:
    a, g = _tokens(answer), _tokens(gold)
    common = sum(min(a.count(t), g.count(t)) for t in set(a))
    if common == 0:
        return 0.0
    precision, recall = common / len(a), common / len(g)
    return 2 * precision * recall / (precision + recall)


@pytest.mark.parametrize(
    ("metric", "gold"),
    [("f1", "42 7"), ("em", "42 7"), ("em", "42"), ("math", "42.0"), ("f1", "42.0")],
)
def test_reward_answer_metric_scores_the_boxed_answer(metric: str, gold: str) -> None:
    groups = rollout(config(f"algo.reward.answer_metric={metric}"), groups=3, ground_truth=gold)
    scored = 0
    for g in groups:
        for t in g.tree.trajectories():
            answer = _answer(t.text)
            if answer is None:
                assert t.reward == -1.0
                continue
            if metric == "f1":
                expected = _f1(answer, gold)
            elif metric == "em":
                expected = float(_tokens(answer) == _tokens(gold))
            else:
                expected = float(float(answer) == float(gold))
            assert t.reward == pytest.approx(expected)
            scored += answer == "42"
    assert scored  # some trajectories answered 42, where the metrics disagree


@pytest.mark.parametrize("penalty", [-1.0, -0.25])
def test_reward_format_penalty_is_the_reward_of_a_broken_response(penalty: float) -> None:
    # a 40-token response budget cuts many trajectories before their answer
    groups = rollout(config(f"algo.reward.format_penalty={penalty}", "rollout.max_response_tokens=40"), groups=3)
    broken = [t.reward for g in groups for t in g.tree.trajectories() if _answer(t.text) is None]
    assert broken and all(r == penalty for r in broken)


@pytest.mark.parametrize(("bonus", "tools"), [(0.3, "[python]"), (0.1, "[python]"), (0.3, "[search, python]")])
def test_reward_tool_bonus_and_bonus_tools(bonus: float, tools: str) -> None:
    groups = rollout(config(f"algo.reward.tool_bonus={bonus}", f"algo.reward.bonus_tools={tools}"), groups=3)
    earned = 0
    for g in groups:
        for t in g.tree.trajectories():
            answer = _answer(t.text)
            if answer is None:
                continue
            # the scripted policy only calls python: the bonus needs bonus_tools ⊆ {python} and a correct answer
            gets = answer == "42" and t.num_tool_calls > 0 and tools == "[python]"
            assert t.reward == pytest.approx(float(answer == "42") + (bonus if gets else 0.0))
            earned += gets
    assert bool(earned) is (tools == "[python]")


def test_reward_tool_tags_are_the_calls_the_format_check_knows() -> None:
    groups = rollout(config(), groups=2)
    texts = [t.text for g in groups for t in g.tree.trajectories() if t.num_tool_calls and _answer(t.text)]
    assert texts
    known = make_reward_function(RewardConfig())
    blind = make_reward_function(RewardConfig(tool_tags=("search",), bonus_tools=("search",)))
    # without python in tool_tags, a python call followed by its result reads as a result without a call
    assert all(known(text, "42").format_ok and not blind(text, "42").format_ok for text in texts)
    assert all(blind(text, "42").score == -1.0 for text in texts)


@pytest.mark.parametrize("require", [True, False])
def test_reward_require_think(require: bool) -> None:
    reward = make_reward_function(RewardConfig(require_think=require))
    no_think = "<answer>\\boxed{42}</answer>"
    assert reward(no_think, "42").score == (-1.0 if require else 1.0)
    assert reward("<think>x</think>" + no_think, "42").score == 1.0


@pytest.mark.parametrize(("max_chars", "equal"), [(400, True), (5, False)])
def test_reward_math_max_chars_guards_math_verify(max_chars: int, equal: bool) -> None:
    # 1/2 = 0.5, but "\frac{1}{2}" (11 characters) is compared as a string only when longer than max_chars
    reward = make_reward_function(RewardConfig(answer_metric="math", math_max_chars=max_chars))
    result = reward("<think>x</think><answer>\\boxed{0.5}</answer>", "\\frac{1}{2}")
    assert result.math is equal and result.score == float(equal)


@pytest.mark.parametrize("timeout", [7, None])
def test_reward_math_timeout_seconds_reaches_math_verify(timeout: int | None, monkeypatch: pytest.MonkeyPatch) -> None:
    import math_verify

    seen: list[object] = []
    parse, verify = math_verify.parse, math_verify.verify

    def spy_parse(text: str, **kw: Any) -> Any:
        seen.append(kw.get("parsing_timeout"))
        return parse(text, **kw)

    def spy_verify(gold: Any, pred: Any, **kw: Any) -> Any:
        seen.append(kw.get("timeout_seconds"))
        return verify(gold, pred, **kw)

    monkeypatch.setattr(math_verify, "parse", spy_parse)
    monkeypatch.setattr(math_verify, "verify", spy_verify)
    reward = make_reward_function(RewardConfig(answer_metric="math", math_timeout_seconds=timeout))
    assert reward("<think>x</think><answer>\\boxed{0.5}</answer>", "\\frac{1}{2}").score == 1.0
    assert seen == [timeout, timeout, timeout]  # two parses and one comparison, in this (the main) thread


# ---------------------------------------------------------------------------------------------- refused settings


def test_dynamic_global_samples_without_logprobs_is_an_error_naming_it() -> None:
    server = TopKServer(ScriptedPolicy(seed=0), drop_logprobs=True)
    with pytest.raises(ValueError, match=r"dynamic_global_samples=True .* no top-k logprobs"):
        rollout(config("algo.branching.dynamic_global_samples=true"), groups=1, server=server)


def test_dynamic_global_samples_cannot_start_all_globals_at_once() -> None:
    # the synchronous simulation (and any caller of start()) cannot pre-monitor: refused, not ignored
    scheduler = BranchScheduler(BranchingConfig(dynamic_global_samples=True), seed=0)
    with pytest.raises(ValueError, match=r"dynamic_global_samples=True .* start_premonitored"):
        scheduler.start()
    sized = BranchScheduler.for_group(BranchingConfig(dynamic_global_samples=True), 0, root_entropy=1.0)
    assert len(sized.start()) == 8  # N known up front (no tool window: the configured one)


def test_dynamic_global_samples_min_without_pre_monitoring_is_an_error() -> None:
    with pytest.raises(ConfigError, match=r"dynamic_global_samples_min=3 .* set dynamic_global_samples=true"):
        load_config(overrides=["algo.branching.dynamic_global_samples_min=3"])
    assert load_config(overrides=["algo.branching.dynamic_global_samples_min=1"]).algo.branching.is_grpo is False


def test_tool_bonus_under_hermes_calls_is_an_error_naming_it() -> None:
    with pytest.raises(ValueError, match=r"algo.reward.tool_bonus=0.1 can never be earned with HermesProtocol"):
        rollout(config(), groups=1, parser=HermesProtocol())
    rollout(config("algo.reward.tool_bonus=0"), groups=1, parser=HermesProtocol())  # no bonus asked: fine


def test_reward_that_cannot_see_the_parsers_tools_is_an_error() -> None:
    with pytest.raises(ValueError, match=r"tag_arguments defines \['python'\], which algo.reward.tool_tags"):
        rollout(config("algo.reward.tool_tags=[search]", "algo.reward.bonus_tools=[search]"), groups=1)
    python_only = TagProtocol({"python": "code"})
    with pytest.raises(ValueError, match=r"bonus_tools=\['search', 'python'\] includes \['search'\]"):
        rollout(config(), groups=1, parser=python_only)
    rollout(config("algo.reward.bonus_tools=[python]"), groups=1, parser=python_only)


def test_scheduler_waits_for_the_pre_monitoring_size() -> None:
    scheduler = BranchScheduler(BranchingConfig(budget=8, global_samples=4, dynamic_global_samples=True), seed=0)
    first = scheduler.start_premonitored()
    assert scheduler.awaiting_size and scheduler.fill() == ()
    with pytest.raises(RuntimeError, match="size_global_samples"):
        scheduler.decide(first.index, 1, 0.0)
    with pytest.raises(RuntimeError, match="size_global_samples"):
        scheduler.finish(first.index)
    # H_root = 1, H_tool = 3: N = int(8·σ(−1)) + 1 = int(2.15) + 1 = 3
    others = scheduler.size_global_samples(1.0, [3.0])
    assert [s.lineage for s in others] == [(0, 1), (0, 2)] and scheduler.n_global == 3
    assert scheduler.decide(first.index, 1, 0.0).reason in ("branch", "no_branch")
    with pytest.raises(ValueError, match="call start\\(\\) instead"):
        BranchScheduler(BranchingConfig(), seed=0).start_premonitored()


def test_a_group_sized_up_front_is_not_pre_monitored_again() -> None:
    presized = BranchScheduler.for_group(
        BranchingConfig(budget=8, global_samples=4, dynamic_global_samples=True),
        0,
        root_entropy=1.0,
        tool_entropies=[3.0],
    )
    assert not presized.needs_premonitoring and len(presized.start()) == 3  # int(8·σ(−1)) + 1, as above
