"""``bench/learning_stats.py``: the learning study's intervals, summaries, targets and tables, checked by hand.

Hand arithmetic used below (t(0.975, 2) = 4.303, √3 = 1.7320508):
three seeds 0.50, 0.55, 0.60 → mean 0.55, s = 0.05, half-width 4.303 · 0.05 / √3 = 0.124217;
0.1, 0.2, 0.3 → s = 0.1, half-width 0.248434; 0.8, 1.0, 1.2 → s = 0.2, 0.496868; 2.0, 2.5, 3.0 → s = 0.5, 1.242170.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import learning_stats as stats


def test_t_critical_values_from_the_table() -> None:
    assert stats.t_critical(2) == 4.303  # 3 seeds
    assert stats.t_critical(4) == 2.776  # 5 seeds
    assert stats.t_critical(35) == 2.042  # between rows: the smaller df (30), a wider interval
    assert stats.t_critical(500) == 1.960
    with pytest.raises(ValueError, match="at least 2 values"):
        stats.t_critical(0)


def test_t_interval_by_hand() -> None:
    iv = stats.t_interval([0.50, 0.55, 0.60])
    assert iv.mean == pytest.approx(0.55) and iv.n == 3
    assert iv.half_width == pytest.approx(0.124217, abs=1e-6)
    assert (iv.low, iv.high) == pytest.approx((0.425783, 0.674217), abs=1e-6)
    one = stats.t_interval([2.0])
    assert one.mean == 2.0 and math.isnan(one.half_width) and one.n == 1
    assert stats.t_interval([0.3] * 6).half_width == 0.0


def _rows(sft: float, final: float, reward: float, calls_q: float, calls_traj: float, train_reward: float) -> Any:
    """A 4-step run's metrics.jsonl: evaluations at steps 0, 2, 4; train rows 0–3, step 1 written twice (a resumed
    run repeats the steps after its checkpoint: the later row counts)."""
    ev = {"phase": "eval", "questions": 48}
    tr = {"phase": "train", "reward_mean": train_reward}
    return [
        {**ev, "step": 0, "label": "before", "pass@1": sft, "mean_reward": 0.0, "tool_calls_per_episode": 1.0},
        {**tr, "step": 0, "tool_calls_per_trajectory": calls_traj - 0.1},
        {**tr, "step": 1, "tool_calls_per_trajectory": 9.0, "reward_mean": -1.0},
        {**ev, "step": 2, "label": "step 2", "pass@1": (sft + final) / 2, "tool_calls_per_episode": 1.2},
        {**tr, "step": 1, "tool_calls_per_trajectory": calls_traj + 0.1},
        {**tr, "step": 2, "tool_calls_per_trajectory": calls_traj - 0.1},
        {**tr, "step": 3, "tool_calls_per_trajectory": calls_traj + 0.1},
        {**ev, "step": 4, "label": "after", "pass@1": final, "mean_reward": reward, "tool_calls_per_episode": calls_q},
    ]


@pytest.fixture
def runs() -> list[stats.RunSummary]:
    arpo = [(0.50, 0.1, 0.8, 0.4), (0.55, 0.2, 1.0, 0.5), (0.60, 0.3, 1.2, 0.6)]
    grpo = [(0.40, 0.0, 2.0, 0.3), (0.50, 0.0, 2.5, 0.3), (0.45, 0.0, 3.0, 0.3)]
    out = []
    for method, seeds in (("arpo", arpo), ("grpo", grpo)):
        for seed, (acc, reward, calls, train_reward) in enumerate(seeds):
            rows = _rows(0.30, acc, reward, 1.5, calls, train_reward)
            out.append(stats.summarize_run(method, seed, rows))
    return out


def test_summarize_run_reads_the_first_and_last_evaluation_and_averages_the_steps(
    runs: list[stats.RunSummary],
) -> None:
    run = runs[1]  # ARPO seed 1
    assert (run.steps_done, run.questions) == (4, 48)
    assert run.sft == {"heldout_accuracy": 0.30, "heldout_reward": 0.0, "heldout_tool_calls": 1.0}
    assert run.final["heldout_accuracy"] == 0.55 and run.final["heldout_reward"] == 0.2
    # (0.9 + 1.1 + 0.9 + 1.1) / 4: the superseded step-1 row (9.0) is not counted
    assert run.final["train_tool_calls"] == pytest.approx(1.0)
    assert run.final["train_reward"] == pytest.approx(0.5)
    assert sorted(run.heldout_by_step) == [0, 2, 4] and math.isnan(run.heldout_by_step[2]["heldout_reward"])


def test_a_run_without_its_final_evaluation_is_refused() -> None:
    rows = [r for r in _rows(0.3, 0.5, 0.0, 1.0, 1.0, 0.0) if r["phase"] == "train" or r["step"] == 0]
    with pytest.raises(ValueError, match=r"evaluations at steps \[0\]"):
        stats.summarize_run("arpo", 0, rows)


def test_aggregate_targets_and_table_by_hand(runs: list[stats.RunSummary]) -> None:
    agg = stats.aggregate(runs)
    floor = stats.sft_floor(runs)
    assert floor["heldout_accuracy"] == stats.Interval(pytest.approx(0.30), 0.0, 6)  # type: ignore[arg-type]
    assert agg["grpo"]["heldout_accuracy"].mean == pytest.approx(0.45)
    assert agg["grpo"]["train_tool_calls"].half_width == pytest.approx(1.242170, abs=1e-6)

    lines = [t.line() for t in stats.targets(agg, floor)]
    assert lines == [
        # 0.55 / 0.45; ARPO's low 0.4258 < GRPO's high 0.5742
        "ARPO ÷ GRPO held-out accuracy = 1.22 (target >= 1.00): met (the 95% intervals overlap: within seed noise)",
        # 1.0 / 2.5; ARPO's high 1.497 is not under 0.6 × GRPO's low 1.258
        "ARPO ÷ GRPO tool calls per trajectory = 0.40 (target <= 0.60): met (the 95% intervals overlap: within seed "
        "noise)",
        "ARPO ÷ SFT-only held-out accuracy = 1.83 (target > 1.00): met",  # 0.55 / 0.30; 0.4258 > 0.30
        "GRPO ÷ SFT-only held-out accuracy = 1.50 (target > 1.00): met",  # 0.45 / 0.30; 0.3258 > 0.30
    ]
    table = stats.results_table(agg, floor)
    assert table[2] == "| SFT-only (the starting model) | 6 | 30.0% ± 0.0 | +0.000 ± 0.000 | 1.00 ± 0.00 | — | — |"
    assert table[3].startswith("| GRPO | 3 | 45.0% ± 12.4 | +0.000 ± 0.000 | 1.50 ± 0.00 | 2.50 ± 1.24 |")
    assert table[4] == "| ARPO | 3 | 55.0% ± 12.4 | +0.200 ± 0.248 | 1.50 ± 0.00 | 1.00 ± 0.50 | +0.500 ± 0.248 |"


def test_a_target_against_zero_is_not_met() -> None:
    zero = stats.Interval(0.0, 0.0, 3)
    agg = {m: {"heldout_accuracy": zero, "train_tool_calls": zero} for m in ("arpo", "grpo")}
    first = stats.targets(agg, {"heldout_accuracy": zero})[0]
    assert not first.met and "n/a (division by 0)" in first.line()


def test_curves_by_step_count_the_seeds_that_reached_a_step(runs: list[stats.RunSummary]) -> None:
    arpo = [r for r in runs if r.method == "arpo"]
    trimmed = stats.RunSummary("arpo", 9, 4, 48, arpo[0].sft, arpo[0].final, {0: arpo[0].heldout_by_step[0]}, {})
    curve = stats.curve([*arpo, trimmed], "heldout_accuracy")
    assert [(step, iv.n) for step, iv in curve] == [(0, 4), (2, 3), (4, 3)]
    assert curve[1][1].mean == pytest.approx((0.40 + 0.425 + 0.45) / 3)  # (0.30 + final) / 2 per seed
    train = stats.curve(arpo, "train_tool_calls")
    assert [step for step, _ in train] == [0, 1, 2, 3] and train[0][1].mean == pytest.approx(0.9)

    table = stats.by_step_table({"arpo": curve})
    assert table[:2] == ["| step | ARPO |", "|--:|--:|"] and table[2] == "| 0 | 30.0% ± 0.0 |"


def test_formats_and_the_ablation_table(runs: list[stats.RunSummary]) -> None:
    assert stats.fmt(stats.Interval(0.583333, 0.0412, 3), "heldout_accuracy") == "58.3% ± 4.1"
    assert stats.fmt(stats.Interval(-0.25, math.nan, 1), "train_reward") == "-0.250"
    assert [stats.fraction_of(n, 4) for n in (1, 2, 3, 4)] == ["M/4", "M/2", "3M/4", "M"]
    agg = stats.aggregate(runs)
    table = stats.ablation_table({2: agg["arpo"], 1: agg["grpo"]}, 4)
    assert table[0].startswith("| N (M = 4) | runs | held-out accuracy |")
    assert table[2].startswith("| 1 = M/4 | 3 | 45.0% ± 12.4 |") and table[3].startswith("| 2 = M/2 | 3 | 55.0%")
