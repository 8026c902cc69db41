"""BranchScheduler: hand-checked decisions and invariants as properties over random interleavings."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from arpo_core.algo.aepo import consecutive_branch_factor, dynamic_global_samples
from arpo_core.algo.branching import BranchScheduler, Origin, group_seed
from arpo_core.config import BranchingConfig


def cfg(**kw: object) -> BranchingConfig:
    return BranchingConfig.model_validate(kw)


def test_paper_defaults() -> None:
    c = BranchingConfig()
    assert (c.budget, c.global_samples, c.branches_per_decision) == (16, 8, 1)
    assert (c.alpha, c.beta, c.tau, c.branch_rule, c.call_limit) == (0.5, 0.2, 0.5, "stochastic", 3)
    assert c.branch_budget == 8 and not c.is_grpo


def test_threshold_rule_by_hand() -> None:
    # P = 0.5 + 0.2 ΔH; branch iff P > τ = 0.5.
    s = BranchScheduler(cfg(branch_rule="threshold", budget=8, global_samples=2))
    g0, g1 = s.start()
    d = s.decide(g0.index, 1, 0.1)  # P = 0.52
    assert d.positive and d.probability == pytest.approx(0.52) and len(d.children) == 1
    assert s.decide(g1.index, 1, -0.1).positive is False  # P = 0.48
    assert s.decide(g1.index, 2, 0.0).positive is False  # P = 0.5 is not > 0.5
    child = d.children[0]
    assert (child.origin, child.root, child.parent, child.branch_step) == (
        Origin.BRANCH,
        g0.index,
        g0.index,
        1,
    )


def test_stochastic_rule_branches_with_probability_clip_alpha_plus_beta_dh() -> None:
    # Keyed draws are uniform: over many (trajectory, step) keys the branch rate is clip(0.5 + 0.2 * 1.0) = 0.7.
    # 4000 draws: sd = sqrt(0.7 * 0.3 / 4000) = 0.0072, so a 0.03 window is > 4 sd (and the draws are seeded).
    positives = 0
    total = 0
    for seed in range(400):
        s = BranchScheduler(cfg(budget=16, global_samples=16, call_limit=10), seed=seed)
        for slot in s.start()[:1]:
            for step in range(1, 11):
                positives += s.decide(slot.index, step, 1.0).positive
                total += 1
    assert abs(positives / total - 0.7) < 0.03
    # clip: P = 0.5 + 0.2 * 5 = 1.5 -> always; P = 0.5 - 0.2 * 5 = -0.5 -> never.
    s = BranchScheduler(cfg(budget=16, global_samples=16, call_limit=10), seed=1)
    (slot, *_) = s.start()
    assert all(s.decide(slot.index, t, 5.0).positive for t in range(1, 6))
    assert not any(s.decide(slot.index, t, -5.0).positive for t in range(6, 11))


def test_draws_do_not_depend_on_call_order() -> None:
    def run(order: list[int]) -> dict[tuple[int, int], float | None]:
        s = BranchScheduler(cfg(budget=6, global_samples=6, call_limit=3), seed=7)
        s.start()
        out = {}
        for t in range(1, 4):
            for i in order:
                d = s.decide(i, t, 0.3)
                out[(i, t)] = d.draw
        return out

    assert run([0, 1, 2, 3, 4, 5]) == run([5, 3, 1, 0, 4, 2])


def test_group_seed_differs_between_groups_and_is_stable() -> None:
    assert group_seed(0, "q1") == group_seed(0, "q1")
    assert group_seed(0, "q1") != group_seed(0, "q2")
    assert group_seed(0, "q1") != group_seed(1, "q1")


def test_grpo_when_n_equals_m_never_branches_and_never_fills() -> None:
    s = BranchScheduler(cfg(budget=4, global_samples=4, alpha=1.0, call_limit=5))
    slots = s.start()
    assert [x.origin for x in slots] == [Origin.GLOBAL] * 4
    d = s.decide(0, 1, 10.0)
    assert d.positive and d.children == () and d.reason == "budget_exhausted"
    for x in slots:
        s.finish(x.index)
    assert s.fill() == () and s.done


def test_budget_z_and_fill() -> None:
    # M = 5, N = 2, Z = 2: one positive decision takes 2 of the 3 branch slots, the next gets the last one.
    s = BranchScheduler(cfg(budget=5, global_samples=2, branches_per_decision=2, branch_rule="threshold"))
    g0, g1 = s.start()
    assert len(s.decide(g0.index, 1, 1.0).children) == 2
    d = s.decide(g1.index, 1, 1.0)
    assert len(d.children) == 1 and s.branches_created == 3
    assert s.decide(g1.index, 2, 1.0).reason == "budget_exhausted"

    # Branches unused: M = 4, N = 2, nobody branches -> 2 fills once nothing can branch any more.
    s = BranchScheduler(cfg(budget=4, global_samples=2, branch_rule="threshold", alpha=0.0, beta=0.0, call_limit=2))
    g0, g1 = s.start()
    s.decide(g0.index, 1, 0.0)
    assert s.fill() == ()  # g0 and g1 may still branch
    s.finish(g0.index)
    s.decide(g1.index, 1, 0.0)
    s.decide(g1.index, 2, 0.0)  # g1 reached call_limit: cannot branch any more, though still running
    fills = s.fill()
    assert [f.origin for f in fills] == [Origin.FILL, Origin.FILL] and len(s.slots) == 4
    assert s.decide(fills[0].index, 1, 9.0).reason == "fill_never_branches"
    assert s.fill() == ()


def test_call_limit_and_misuse_errors() -> None:
    s = BranchScheduler(cfg(budget=4, global_samples=1, call_limit=1, alpha=1.0))
    (g,) = s.start()
    assert s.decide(g.index, 1, 0.0).children  # at the limit: allowed
    with pytest.raises(ValueError, match="not after its previous step"):
        s.decide(g.index, 1, 0.0)
    assert s.decide(g.index, 2, 0.0).reason == "call_limit"
    s.finish(g.index)
    with pytest.raises(ValueError, match="finished"):
        s.decide(g.index, 3, 0.0)
    with pytest.raises(RuntimeError, match="already called"):
        s.start()
    with pytest.raises(ValueError, match="global_samples=9"):
        BranchScheduler(cfg(budget=8), global_samples=9)


def test_branch_first_step_is_after_its_branch_point() -> None:
    s = BranchScheduler(cfg(budget=3, global_samples=1, alpha=1.0, call_limit=5))
    (g,) = s.start()
    (child,) = s.decide(g.index, 2, 0.0).children
    with pytest.raises(ValueError, match="not after its previous step 2"):
        s.decide(child.index, 2, 0.0)
    assert s.decide(child.index, 3, 0.0).children[0].root == g.index  # branches of branches keep the root


def test_aepo_consecutive_penalty_by_hand() -> None:
    # α = 0.52, β = 0, τ = 0.5, c = 0.05: first P = 0.52 > 0.5 (l = 0), then P = 0.52 * 0.95 = 0.494 (l = 1).
    s = BranchScheduler(
        cfg(
            budget=8,
            global_samples=1,
            alpha=0.52,
            beta=0.0,
            branch_rule="threshold",
            consecutive_branch_penalty=0.05,
        )
    )
    (g,) = s.start()
    first = s.decide(g.index, 1, 0.0)
    second = s.decide(g.index, 2, 0.0)
    assert first.positive and first.children[0].consecutive == 1
    assert second.probability == pytest.approx(0.494) and not second.positive
    third = s.decide(g.index, 3, 0.0)  # the negative decision reset l to 0
    assert third.probability == pytest.approx(0.52) and third.positive
    assert consecutive_branch_factor(0.05, 30) == 0.0


def test_aepo_dynamic_global_samples_by_hand() -> None:
    # σ(0) = 0.5 -> int(16 * 0.5) + 1 = 9;  σ(0.5 * 2) = 0.7310586 -> int(11.697) + 1 = 12.
    assert dynamic_global_samples(16, 1.0, [1.0, 1.0]) == 9
    assert dynamic_global_samples(16, 3.0, [1.0]) == 12
    assert dynamic_global_samples(16, -100.0, [0.0]) == 1  # σ -> 0: at least one global sample
    assert dynamic_global_samples(16, 100.0, [0.0]) == 16  # capped at M
    assert dynamic_global_samples(16, 0.0, [], minimum=3) == 16
    assert dynamic_global_samples(16, -100.0, [0.0], minimum=4) == 4
    assert 1.0 / (1.0 + math.exp(-1.0)) == pytest.approx(0.7310586)


@st.composite
def group_scripts(draw: st.DrawFn) -> tuple[BranchingConfig, int, list[int], list[float], list[int]]:
    m = draw(st.integers(1, 16))
    n = draw(st.integers(1, m))
    config = cfg(
        budget=m,
        global_samples=n,
        branches_per_decision=draw(st.integers(1, 3)),
        alpha=draw(st.floats(-0.5, 1.5)),
        beta=draw(st.floats(-1.0, 1.0)),
        tau=draw(st.floats(0.0, 1.0)),
        branch_rule=draw(st.sampled_from(["stochastic", "threshold"])),
        call_limit=draw(st.integers(0, 4)),
        consecutive_branch_penalty=draw(st.sampled_from([0.0, 0.05, 0.5])),
    )
    seed = draw(st.integers(0, 2**32))
    calls = draw(st.lists(st.integers(0, 6), min_size=m, max_size=m))  # tool calls each trajectory attempts
    deltas = draw(st.lists(st.floats(-3, 3), min_size=1, max_size=20))
    order = draw(st.lists(st.integers(0, 10**6), min_size=1, max_size=200))  # interleaving choices
    return config, seed, calls, deltas, order


@settings(max_examples=400, deadline=None)
@given(group_scripts())
def test_invariants_under_random_interleavings(script: tuple) -> None:  # type: ignore[type-arg]
    config, seed, calls, deltas, order = script
    s = BranchScheduler(config, seed=seed)
    # running trajectory -> (next tool step, last tool step it will reach)
    running: dict[int, list[int]] = {}

    def launch(slots: tuple) -> None:  # type: ignore[type-arg]
        for slot in slots:
            attempts = calls[slot.index]
            last = min(slot.branch_step + attempts, config.call_limit)  # a call past the limit ends it
            running[slot.index] = [slot.branch_step + 1, last]

    launch(s.start())
    k = 0
    while running or not s.done:
        if not running:
            fills = s.fill()
            assert fills, "the group is not done and nothing runs, so fill() must add trajectories"
            launch(fills)
            continue
        pick = sorted(running)[order[k % len(order)] % len(running)]
        k += 1
        step, last = running[pick]
        if step > last:
            s.finish(pick)
            del running[pick]
        else:
            d = s.decide(pick, step, deltas[k % len(deltas)])
            assert d.tool_step <= config.call_limit or not d.children
            launch(d.children)
            running[pick][0] += 1
        launch(s.fill())

    slots = s.slots
    assert len(slots) == config.budget  # exactly M
    assert sum(x.origin is Origin.GLOBAL for x in slots) == config.global_samples
    assert s.branches_created <= config.budget - config.global_samples  # never more than M - N branches
    for x in slots:
        assert x.branch_step <= config.call_limit  # no branch past call_limit
        assert slots[x.root].origin in (Origin.GLOBAL, Origin.FILL)  # branches keep a global root
        if x.origin is Origin.BRANCH:
            assert x.parent is not None and slots[x.parent].root == x.root
    for d in s.decisions:
        if slots[d.trajectory].origin is Origin.FILL:
            assert not d.children
    if config.is_grpo:
        assert all(x.origin is Origin.GLOBAL for x in slots)


def test_for_group_applies_aepo_sizing_only_when_enabled() -> None:
    off = BranchScheduler.for_group(cfg(budget=16, global_samples=8), 0, root_entropy=3.0, tool_entropies=[1.0])
    assert off.n_global == 8
    on = cfg(budget=16, global_samples=8, dynamic_global_samples=True)
    assert BranchScheduler.for_group(on, 0, root_entropy=3.0, tool_entropies=[1.0]).n_global == 12  # see above
    assert BranchScheduler.for_group(on, 0).n_global == 8  # no pre-monitoring data: the configured N
