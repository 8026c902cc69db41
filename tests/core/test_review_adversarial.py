"""Second review of arpo-core's algorithm modules: edge cases the other tests miss, and tests that expose bugs.

Every number is derived by hand in a comment next to it. Tests that fail on the reviewed code name the bug in
their docstring (``BUG:``); they are not marked xfail on purpose.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from arpo_core.algo.advantages import group_advantages
from arpo_core.algo.aepo import dynamic_global_samples
from arpo_core.algo.attribution import attribute, packed_view
from arpo_core.algo.branching import BranchScheduler, Origin, TrajectorySlot
from arpo_core.algo.entropy import (
    ExactFromLogits,
    TopKTruncated,
    TopKWithTail,
    entropy_from_topk,
    entropy_from_topk_with_tail,
)
from arpo_core.algo.entropy_monitor import EntropyMonitor
from arpo_core.config import BranchingConfig
from arpo_core.simulation import GeneratedSegment, expand_group
from arpo_core.tree import RolloutTree, SegmentKind, ToolCallInfo, read_jsonl, write_jsonl

V = 1024  # ln V = 10 ln 2: a token whose top-k is uniform over 2^b entries has normalised entropy b / 10
RESULT = 1  # the token the scripted policies below read as "a tool result ended here"


def cfg(**kw: object) -> BranchingConfig:
    return BranchingConfig.model_validate(kw)


def no_tool(call: ToolCallInfo) -> str:
    return "ok"


# ============================================================================ entropy estimators


def test_two_token_vocab_bounds_by_hand() -> None:
    # |V| = 2, p = (1/2, 1/2), only the top-1 entry ln(1/2) is returned.
    #   truncated: -(1/2) ln(1/2) = (ln 2)/2            -> / ln 2 = 0.5
    #   exact:     ln 2                                   -> 1.0
    #   tail:      head + r = 1/2 on |V| - 1 = 1 token: -(1/2) ln(1/2) -> total ln 2 -> 1.0 (tight)
    top1 = [[math.log(0.5)]]
    assert TopKTruncated(2)(top1)[0] == pytest.approx(0.5)
    assert ExactFromLogits()(np.zeros((1, 2)))[0] == pytest.approx(1.0)
    assert TopKWithTail(2)(top1)[0] == pytest.approx(1.0)


def test_row_with_no_known_mass() -> None:
    # All entries -inf (vLLM's -9999 stand-in behaves the same): nothing known.
    # truncated: 0.  tail: r = 1 spread over all |V| tokens: -1 · ln(1/|V|) = ln|V| -> normalised 1.
    row = [[-math.inf, -9999.0]]
    assert TopKTruncated(V)(row)[0] == 0.0
    assert TopKWithTail(V)(row)[0] == pytest.approx(1.0)


def test_sampled_token_appended_to_topk_keeps_the_bounds() -> None:
    # p = (0.5, 0.25, 0.125, 0.0625, 0.0625) over |V| = 5; endpoint returns top-2 plus the sampled 4th token.
    # truncated = 0.5 ln 2 + 0.25 ln 4 + 0.0625 ln 16 = (0.5 + 0.5 + 0.25) ln 2 = 1.25 ln 2
    # exact     = 1.25 ln 2 + 0.125 ln 8 + 0.0625 ln 16 = (1.25 + 0.375 + 0.25) ln 2 = 1.875 ln 2
    # tail: r = 0.1875 over 5 - 3 = 2 tokens: -0.1875 ln(0.09375) = 0.1875 (ln 32 - ln 3)
    rows = [[math.log(0.5), math.log(0.25), math.log(0.0625)], [math.log(0.5)]]  # ragged second row
    truncated = entropy_from_topk(rows)
    tail = entropy_from_topk_with_tail(rows, 5)
    assert truncated[0] == pytest.approx(1.25 * math.log(2))
    assert tail[0] == pytest.approx(1.25 * math.log(2) + 0.1875 * (5 * math.log(2) - math.log(3)))
    assert truncated[0] <= 1.875 * math.log(2) <= tail[0]
    # second row: p = 1/2 known, r = 1/2 over 4 tokens: 0.5 ln 2 + 0.5 ln 8 = 2 ln 2
    assert tail[1] == pytest.approx(2 * math.log(2))


def test_truncated_estimator_is_not_monotone_in_true_entropy() -> None:
    """Documented property (passes): the reference's truncated top-k sum can rank a flatter distribution lower.

    A: uniform over |V| = 1000 (exact h = 1); top-2 known: 2 · (1/1000) ln 1000 / ln 1000 = 0.002.
    B: (1/2, 1/2, 0, ...) (exact h = ln 2 / ln 1000 = 0.10034); top-2 is the whole mass: 0.10034.
    So ΔH measured with ``topk`` can be negative where the true entropy rose (the tail estimator orders them).
    """
    v = 1000
    uniform = [[math.log(1 / v)] * 2]
    coin = [[math.log(0.5)] * 2]
    assert TopKTruncated(v)(uniform)[0] == pytest.approx(0.002)
    assert TopKTruncated(v)(coin)[0] == pytest.approx(math.log(2) / math.log(v))
    assert TopKTruncated(v)(uniform)[0] < TopKTruncated(v)(coin)[0]
    assert TopKWithTail(v)(uniform)[0] > TopKWithTail(v)(coin)[0]


def test_nan_logprob_is_rejected_not_propagated() -> None:
    """BUG: a NaN top-k logprob gives a NaN entropy, which makes ΔH NaN and silently disables branching.

    ``_topk_probs`` rejects positive logprobs but lets NaN through (``NaN > 1e-6`` is False), and
    ``0 · NaN = NaN`` in ``_plogp_sum``. Expected: a ValueError like the positive-logprob one (or a finite value).
    """
    rows = [[math.nan, math.log(0.5)]]
    for estimator in (TopKTruncated(V), TopKWithTail(V)):
        try:
            h = estimator(rows)
        except ValueError:
            continue
        assert np.all(np.isfinite(h)), f"{type(estimator).__name__} returned {h}"


def test_estimator_accepts_an_empty_array_segment() -> None:
    """BUG (minor): a zero-token segment as a ``(0, k)`` array crashes ``pad_topk``'s ``reshape(0, -1)``.

    The list form ``[]`` works (returns ``(0,)``); the array form should too.
    """
    assert TopKTruncated(V)([]).shape == (0,)
    assert TopKTruncated(V)(np.zeros((0, 10))).shape == (0,)


def test_monitor_window_longer_than_segment_and_zero_tokens() -> None:
    # 3 tokens, each uniform over 4 entries: h = 2/10 each; sum over min(20, 3) tokens = 0.6, mean = 0.2.
    row = (math.log(0.25),) * 4
    assert EntropyMonitor(TopKTruncated(V), window=20).measure([row] * 3) == pytest.approx(0.6)
    assert EntropyMonitor(TopKTruncated(V), window=20, reduction="mean").measure([row] * 3) == pytest.approx(0.2)
    assert EntropyMonitor(TopKTruncated(V)).measure(()) == 0.0


# ============================================================================ branch scheduler


def test_m_equals_one_is_grpo_with_one_sample() -> None:
    s = BranchScheduler(cfg(budget=1, global_samples=1, alpha=1.0, branch_rule="threshold"))
    (g,) = s.start()
    d = s.decide(g.index, 1, 0.0)  # P = 1.0 > τ, but M − N = 0 slots
    assert d.positive and d.children == () and d.reason == "budget_exhausted"
    s.finish(g.index)
    assert s.fill() == () and s.done and len(s.slots) == 1


def test_call_limit_zero_fills_at_once_and_never_branches() -> None:
    # call_limit = 0: no trajectory may branch, so the M − N = 2 fills are due immediately, even while the
    # globals still run; a decision at tool step 1 is past the limit.
    s = BranchScheduler(cfg(budget=4, global_samples=2, call_limit=0, alpha=1.0))
    g0, _ = s.start()
    fills = s.fill()
    assert [f.origin for f in fills] == [Origin.FILL, Origin.FILL]
    assert s.decide(g0.index, 1, 5.0).reason == "call_limit"
    assert s.branches_created == 0


def test_z_larger_than_slots_left() -> None:
    # M = 3, N = 1, Z = 5: the first positive decision gets min(5, 2) = 2 children, the next none.
    s = BranchScheduler(cfg(budget=3, global_samples=1, branches_per_decision=5, alpha=1.0, branch_rule="threshold"))
    (g,) = s.start()
    d1 = s.decide(g.index, 1, 0.0)
    assert [c.index for c in d1.children] == [1, 2]
    assert all(c.parent == 0 and c.branch_step == 1 for c in d1.children)
    assert s.decide(g.index, 2, 0.0).reason == "budget_exhausted"
    assert s.fill() == ()  # the group already has M slots


def test_nan_delta_entropy_is_an_error() -> None:
    """BUG: ΔH = NaN gives P = NaN and a silent ``no_branch`` under both rules (``u < NaN`` and ``NaN > τ``
    are False; Python's ``max(NaN, 0.0)`` returns NaN). NaN means broken logprobs; it should raise."""
    for rule in ("stochastic", "threshold"):
        s = BranchScheduler(cfg(budget=4, global_samples=1, branch_rule=rule))
        (g,) = s.start()
        with pytest.raises(ValueError, match=r"(?i)nan|finite"):
            s.decide(g.index, 1, math.nan)


def test_huge_delta_entropy_saturates() -> None:
    # P = 0.5 + 0.2 · 1e300 -> clip 1: a draw u < 1 always branches; P = 0.5 - 0.2e300 -> clip 0: never.
    for rule in ("stochastic", "threshold"):
        s = BranchScheduler(cfg(budget=4, global_samples=1, branch_rule=rule, call_limit=5), seed=3)
        (g,) = s.start()
        assert s.decide(g.index, 1, 1e300).reason == "branch"
        assert s.decide(g.index, 2, -1e300).reason == "no_branch"
        assert s.decide(g.index, 3, math.inf).reason == "branch"


def test_consecutive_penalty_along_a_branch_of_a_branch() -> None:
    # α = 0.6, β = 0, c = 0.05, threshold τ = 0.5:
    #   g  step 1: l = 0 -> P = 0.6            branch; child b1 inherits l = 1
    #   b1 step 2: l = 1 -> P = 0.6 · 0.95 = 0.57 branch; grandchild b2 inherits l = 2
    #   b2 step 3: l = 2 -> P = 0.6 · 0.90 = 0.54 branch
    s = BranchScheduler(
        cfg(
            budget=8,
            global_samples=1,
            alpha=0.6,
            beta=0.0,
            branch_rule="threshold",
            consecutive_branch_penalty=0.05,
            call_limit=5,
        )
    )
    (g,) = s.start()
    (b1,) = s.decide(g.index, 1, 0.0).children
    d2 = s.decide(b1.index, 2, 0.0)
    (b2,) = d2.children
    d3 = s.decide(b2.index, 3, 0.0)
    assert (b1.consecutive, b2.consecutive) == (1, 2)
    assert d2.probability == pytest.approx(0.57) and d3.probability == pytest.approx(0.54)
    assert b2.root == g.index and b2.parent == b1.index


def test_branch_draws_do_not_depend_on_call_order() -> None:
    """BUG: draws are keyed by ``(seed, trajectory index, step)``, but a branch's index is the order in which
    branches were created; two concurrent parents deciding in the other order swap their children's indices,
    so the child of g0 draws a different number. The module docstring promises the same draws "whatever order
    the runtime calls it in" (only who gets the *last* slots may differ), and the simulation is meant to be the
    reference the async engine is compared against. Fix: key draws by lineage, e.g. (seed, root, path of
    (branch_step, sibling ordinal) pairs, step), or give children ids derived from (parent, step, k)."""

    def child_draws(order: Sequence[int]) -> dict[int, float | None]:
        # α = 0.5, β = 0.5. Step 1, ΔH = 1: P = 1 -> every draw u ∈ [0, 1) branches. Step 2, ΔH = 0: P = 0.5.
        s = BranchScheduler(cfg(budget=6, global_samples=2, alpha=0.5, beta=0.5, call_limit=3), seed=7)
        s.start()
        child_of = {}
        for parent in order:
            (child,) = s.decide(parent, 1, 1.0).children
            child_of[parent] = child.index
        return {parent: s.decide(child_of[parent], 2, 0.0).draw for parent in (0, 1)}

    assert child_draws([0, 1]) == child_draws([1, 0])


def test_aepo_sizing_survives_a_huge_entropy_gap() -> None:
    """BUG: ``math.exp(-0.5 · gap)`` overflows for gap < −1419.6 (OverflowError) instead of σ -> 0.

    Reachable: with reduction ``sum`` and a large ``window`` (unbounded in EntropyConfig) windows reach
    thousands. gap = 0 − 3000: σ = 1/(1 + e^1500) ≈ 0 -> N = int(16 · 0) + 1 = 1. gap = +3000: σ = 1 -> 17 -> M = 16.
    """
    assert dynamic_global_samples(16, 3000.0, [0.0]) == 16
    assert dynamic_global_samples(16, 0.0, [3000.0]) == 1


# ============================================================================ simulation


@dataclass
class FixedPolicy:
    """Segments of ``seg_tokens`` tokens (id 9), each position uniform over 4 top-k entries (h = 0.2, so a
    full 5-token window sums to W = 1.0). Calls a tool while fewer than ``tool_calls`` results are in the
    context. ``after_tool_tokens`` overrides the length of segments that follow a result. Records every call."""

    seg_tokens: int = 5
    tool_calls: int = 99
    after_tool_tokens: int | None = None
    result_tokens: int = 2
    calls: list[tuple[int, int, tuple[int, ...]]] = field(default_factory=list)

    def encode(self, text: str) -> list[int]:
        return [7] * (self.result_tokens - 1) + [RESULT]

    def generate(
        self, context: Sequence[int], max_tokens: int, trajectory: TrajectorySlot, seed: int
    ) -> GeneratedSegment:
        self.calls.append((trajectory.index, max_tokens, tuple(context)))
        step = sum(1 for t in context if t == RESULT)
        n = self.seg_tokens if step == 0 or self.after_tool_tokens is None else self.after_tool_tokens
        n = min(n, max_tokens)
        row = (math.log(0.25),) * 4
        call = (ToolCallInfo("python", {"code": "1"}),) if step < self.tool_calls else ()
        return GeneratedSegment((9,) * n, (math.log(0.25),) * n, (row,) * n, "x", call, "stop")


def run(policy: FixedPolicy, config: BranchingConfig, max_tokens: int = 100, seed: int = 0):  # type: ignore[no-untyped-def]
    monitor = EntropyMonitor(TopKTruncated(V), window=20)
    return expand_group(
        "g", [3], policy, no_tool, BranchScheduler(config, seed=seed), monitor, max_response_tokens=max_tokens
    )


def test_tool_result_truncated_by_the_token_budget() -> None:
    # budget 8: segment 1 = 5 tokens (used 5); the 10-token result is cut to 8 − 5 = 3 tokens (used 8) and
    # the trajectory ends at the tool node with "length"; no segment follows result 1, so no decision.
    policy = FixedPolicy(result_tokens=10)
    out = run(policy, cfg(budget=1, global_samples=1), max_tokens=8)
    traj = out.tree.trajectory(0)
    assert traj.token_ids == [9] * 5 + [7] * 3
    assert traj.loss_mask.tolist() == [1] * 5 + [0] * 3
    assert traj.segments[-1].kind is SegmentKind.TOOL
    assert traj.record.finish_reason == "length"
    assert out.decisions == [] and out.tool_calls == 1
    assert [c[1] for c in policy.calls] == [8]


def test_answer_that_ends_exactly_at_the_budget_keeps_its_finish_reason() -> None:
    """BUG (minor): a segment the policy ended with "stop" (no tool call) exactly at the token budget is
    recorded as "length" (``reason = gen.finish_reason if used < max else "length"``). An inference server
    reports "stop" when the stop token is the last allowed one; only an unfinished segment is "length"."""
    policy = FixedPolicy(tool_calls=0)  # answers at once with 5 tokens, finish_reason "stop"
    out = run(policy, cfg(budget=1, global_samples=1), max_tokens=5)
    assert out.tree.trajectory(0).record.finish_reason == "stop"


def test_branch_restarts_from_the_post_result_prefix_after_its_parent_finished() -> None:
    # M = 2, N = 1, threshold α = 1 > τ: g0 branches after result 1. Timeline (tokens used):
    #   g0: seg (max 100) 5 -> result 2 (used 7) -> seg (max 93) 5 -> decide -> answers, ends (used 12)
    #   b1 starts only after g0 ended, from prompt + seg1 + result1 (used 7): max 93.
    policy = FixedPolicy(tool_calls=1)
    out = run(policy, cfg(budget=2, global_samples=1, alpha=1.0, branch_rule="threshold"))
    assert [(i, m) for i, m, _ in policy.calls] == [(0, 100), (0, 93), (1, 93)]
    assert policy.calls[2][2] == (3, *[9] * 5, 7, RESULT)  # b1's context: not g0's second segment
    tree = out.tree
    assert tree.children(2) == (3, 4)  # node 2 = result 1: g0's segment 3 and b1's segment 4
    assert [r.origin for r in tree.records] == ["global", "branch"]
    assert (tree.records[1].parent, tree.records[1].branch_step, tree.records[1].root) == (0, 1, 0)
    assert len(out.decisions) == 1  # b1's first segment follows a result its parent already decided on


def test_zero_token_segment_after_a_result() -> None:
    # First segment: W = 5 · 0.2 = 1.0 = H_initial. After result 1 the policy writes 0 tokens: W = 0, ΔH = −1.0,
    # P = 0.5 + 0.2 · (−1) = 0.3 < τ -> no branch; M − N = 1 slot left -> one fill, which never branches.
    policy = FixedPolicy(tool_calls=1, after_tool_tokens=0)
    out = run(policy, cfg(budget=2, global_samples=1, branch_rule="threshold"))
    got = [(d.trajectory, d.tool_step, d.delta_entropy, d.probability, d.reason) for d in out.decisions]
    assert got == [
        (0, 1, pytest.approx(-1.0), pytest.approx(0.3), "no_branch"),
        (1, 1, pytest.approx(-1.0), pytest.approx(0.3), "fill_never_branches"),
    ]
    tree = out.tree
    assert [len(s.token_ids) for s in tree.trajectory(0).segments] == [5, 2, 0]
    adv = attribute(tree, [1.0, -1.0])
    assert adv[0].advantages.tolist() == [1.0] * 5 + [0.0, 0.0]
    assert [p.token_ids.size for p in packed_view(tree, [1.0, -1.0])] == [5, 2, 0, 5, 2, 0]


def test_call_limit_zero_in_simulation() -> None:
    # Every first segment calls a tool; call_limit = 0 ends it there ("call_limit"), no tool runs, no decision,
    # and the M − N = 2 unused slots become fills.
    out = run(FixedPolicy(), cfg(budget=3, global_samples=1, call_limit=0))
    assert [r.origin for r in out.tree.records] == ["global", "fill", "fill"]
    assert {r.finish_reason for r in out.tree.records} == {"call_limit"}
    assert out.tool_calls == 0 and out.decisions == []


def test_single_trajectory_group_end_to_end() -> None:
    # M = N = 1, call_limit = 2, α = 1: decisions at steps 1 and 2 are positive but have no slot; the third
    # call (calls = 2 = limit) ends the trajectory. One reward -> advantage 0 (documented deviation from verl).
    out = run(FixedPolicy(), cfg(budget=1, global_samples=1, call_limit=2, alpha=1.0, branch_rule="threshold"))
    assert [d.reason for d in out.decisions] == ["budget_exhausted", "budget_exhausted"]
    assert out.tree.records[0].finish_reason == "call_limit"
    assert out.tree.trajectory(0).num_tool_calls == 2
    adv = group_advantages([0.7])
    assert adv.tolist() == [0.0]
    (ta,) = attribute(out.tree, adv, "hard")
    assert ta.advantages.tolist() == [0.0] * (5 + 2 + 5 + 2 + 5)


# ============================================================================ attribution


def nested_tree() -> RolloutTree:
    """prompt(0) ─ g(1)[2] ─ r1(2)[1] ─ a(3)[1] ─ r2(4)[1] ─ a2(5)[2]     trajectory 0 (global)
                                     └ c(6)[3] ─ r(7)[1] ─ c2(8)[1]       trajectory 1 (branch of 0 at step 1)
                                                        └ d(9)[2]        trajectory 2 (branch of 1 at step 2)
              └ e(10)[1]                                                 trajectory 3 (global)
    [n] = number of tokens."""
    t = RolloutTree("nested", [0])
    g = t.add_segment(0, "generated", [1, 1])
    r1 = t.add_segment(g.node_id, "tool", [2])
    a = t.add_segment(r1.node_id, "generated", [3])
    r2 = t.add_segment(a.node_id, "tool", [4])
    a2 = t.add_segment(r2.node_id, "generated", [5, 5])
    c = t.add_segment(r1.node_id, "generated", [6, 6, 6])
    r = t.add_segment(c.node_id, "tool", [7])
    c2 = t.add_segment(r.node_id, "generated", [8])
    d = t.add_segment(r.node_id, "generated", [9, 9])
    e = t.add_segment(0, "generated", [10])
    # ended out of index order on purpose: array advantages are in trajectory-index order, not end order
    t.end_trajectory(3, e.node_id)
    t.end_trajectory(2, d.node_id, origin="branch", root=0, parent=1, branch_step=2)
    t.end_trajectory(0, a2.node_id)
    t.end_trajectory(1, c2.node_id, origin="branch", root=0, parent=0, branch_step=1)
    t.validate()
    return t


def test_hard_attribution_branch_of_a_branch_by_hand() -> None:
    # Â = (1.0, −1.0, 0.5, 0.0) for trajectories 0..3.
    #   g  (node 1) shared by {0, 1, 2}: (1 − 1 + 0.5) / 3 = 1/6
    #   c  (node 6) shared by {1, 2}:    (−1 + 0.5) / 2 = −0.25
    #   a, a2 only 0: 1.0;  c2 only 1: −1.0;  d only 2: 0.5;  e only 3: 0.0;  tool tokens: 0
    tree = nested_tree()
    hard = attribute(tree, [1.0, -1.0, 0.5, 0.0], "hard")
    s = 1 / 6
    assert hard[0].advantages == pytest.approx([s, s, 0, 1.0, 0, 1.0, 1.0])
    assert hard[1].advantages == pytest.approx([s, s, 0, -0.25, -0.25, -0.25, 0, -1.0])
    assert hard[2].advantages == pytest.approx([s, s, 0, -0.25, -0.25, -0.25, 0, 0.5, 0.5])
    assert hard[3].advantages.tolist() == [0.0]
    assert hard[2].loss_mask.tolist() == [1, 1, 0, 1, 1, 1, 0, 1, 1]
    packed = {p.node_id: p for p in packed_view(tree, [1.0, -1.0, 0.5, 0.0], "hard")}
    assert packed[1].trajectories == (0, 1, 2) and packed[1].advantages == pytest.approx([s, s, s])
    assert packed[6].trajectories == (1, 2) and packed[6].advantages == pytest.approx([-0.25, -0.25])
    soft = {p.node_id: p for p in packed_view(tree, {0: 1.0, 1: -1.0, 2: 0.5, 3: 0.0}, "soft")}
    assert soft[1].advantages.tolist() == [1.0, -1.0, 0.5] and soft[6].advantages.tolist() == [-1.0, 0.5]
    # token counts: unique 2+1+1+1+2+3+1+1+2+1 = 15; expanded 7 + 8 + 9 + 1 = 25
    assert tree.token_counts() == (15, 25)


# ============================================================================ tree JSON


def test_jsonl_round_trip_of_unicode_text_and_tool_arguments(tmp_path: Path) -> None:
    text = 'é ü 漢字 😀 \u2028 line\r\nbreak "quoted" \\ back\x00slash'
    args = {"code": 'print("héllo")\n', "nested": {"list": [1, "ß", None, True, 2.5]}, "emoji 🔧": ""}
    t = RolloutTree("grp ✓", [1], prompt_text=text, metadata={"gold": ["北京"]})
    g = t.add_segment(
        0,
        "generated",
        [2, 3],
        logprobs=[-0.0, -1e-300],
        top_logprobs=[[-0.0, -math.inf], [-1e-300, -9999.0]],
        text=text,
        tool_calls=(ToolCallInfo("python", args, call_id="call_✓", error=None),),
    )
    r = t.add_segment(g.node_id, "tool", [4], text=" <result>\n" + text + "\n</result>")
    leaf = t.add_segment(r.node_id, "generated", [5], logprobs=[math.nan])
    t.end_trajectory(0, leaf.node_id, finish_reason="stop")
    t.set_reward(0, 0.5, {"answer": "北京"})
    path = tmp_path / "u.jsonl"
    write_jsonl(path, [t, t])
    back = list(read_jsonl(path))
    assert len(back) == 2  # U+2028 and \r inside strings must not split the JSONL line
    b = back[0]
    assert b.dumps() == t.dumps()
    assert b.prompt.text == text and b.segment(1).text == text and b.group_id == "grp ✓"
    assert b.segment(1).tool_calls == (ToolCallInfo("python", args, call_id="call_✓"),)
    assert b.segment(1).top_logprobs == ((-0.0, -math.inf), (-1e-300, -9999.0))
    assert math.isnan(b.segment(3).logprobs[0])  # type: ignore[index]
    assert b.records[0].reward_info == {"answer": "北京"}


@pytest.mark.parametrize("bad_parent", [1, -1, 5])
def test_from_dict_rejects_a_parent_that_is_not_an_earlier_node(bad_parent: int) -> None:
    """BUG: ``from_dict`` only checks that node ids are 1, 2, ...; a parent id equal to the node's own id or
    negative is accepted (the node becomes its own child, and ``path``/``descendants_of`` then loop forever),
    and one past the end raises a bare IndexError that ``read_jsonl`` does not turn into its file:line error.
    Fix: require ``0 <= parent_id < node_id`` (and a generated parent for tool segments) with a ValueError."""
    t = RolloutTree("g", [1])
    g = t.add_segment(0, "generated", [1])
    t.end_trajectory(0, g.node_id)
    data = t.to_dict()
    data["segments"][1]["parent_id"] = bad_parent
    with pytest.raises(ValueError, match="parent"):
        RolloutTree.from_dict(data)
