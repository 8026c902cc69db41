"""The final report of ``arpo train``: text and Markdown checked line by line against hand-written expectations."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from arpo_core.report import (
    JsonlSink,
    evals_from_metrics,
    format_seconds,
    print_report,
    render_report,
    report_markdown,
)

EVALS = {
    "base": {"pass@1": 0.2, "mean_f1": 0.3125, "tool_calls_per_episode": 0.4, "format_errors": 5.0},
    "after SFT": {"pass@1": 0.35, "mean_f1": 0.41, "tool_calls_per_episode": 1.0, "format_errors": 2.0},
    "after ARPO": {"pass@1": 0.525, "mean_f1": 0.6, "tool_calls_per_episode": 1.25, "format_errors": 0.0},
}
PATHS = {
    "checkpoints": Path("runs/arpo/checkpoints"),
    "metrics": Path("runs/arpo/metrics.jsonl"),
    "plot": Path("runs/arpo/training.png"),
    "final model": Path("runs/arpo/final"),
}
TIMINGS = {"base eval": 12.34, "SFT": 65.0, "ARPO": 3725.4, "final eval": 30.0}


def test_render_report_text() -> None:
    expected = """\
arpo train: report

Evaluations (held-out questions)
  evaluation  accuracy (pass@1)  mean F1  tool calls / question  format errors
  ----------  -----------------  -------  ---------------------  -------------
  base                    20.0%    0.312                   0.40              5
  after SFT               35.0%    0.410                   1.00              2
  after ARPO              52.5%    0.600                   1.25              0

  base → after ARPO: accuracy 20.0% → 52.5% (+32.5 points), tool calls / question 0.40 → 1.25 (+0.85)
  after SFT → after ARPO: accuracy 35.0% → 52.5% (+17.5 points), tool calls / question 1.00 → 1.25 (+0.25)

Files
  checkpoints  runs/arpo/checkpoints
  metrics      runs/arpo/metrics.jsonl
  plot         runs/arpo/training.png
  final model  runs/arpo/final

Wall time
  base eval   12.3s
  SFT         1m 05s
  ARPO        1h 02m 05s
  final eval  30.0s
  total       1h 03m 53s
"""
    assert render_report(EVALS, paths=PATHS, timings=TIMINGS) == expected


def test_render_report_with_the_training_reward() -> None:
    evals = {
        "base": {"mean_reward": -0.9, "pass@1": 0.05, "mean_f1": 0.0, "tool_calls_per_episode": 0.0,
                 "format_errors": 19},
        "after ARPO": {"mean_reward": 0.85, "pass@1": 0.8, "mean_f1": 0.8, "tool_calls_per_episode": 1.5,
                       "format_errors": 0},
    }  # fmt: skip
    text = render_report(evals)
    assert "  evaluation  mean reward  accuracy (pass@1)  mean F1  tool calls / question  format errors\n" in text
    assert "  base             -0.900               5.0%    0.000                   0.00             19\n" in text
    assert "  after ARPO       +0.850              80.0%    0.800                   1.50              0\n" in text
    # -0.900 → +0.850 is +1.750; 5% → 80% is +75 points
    assert "base → after ARPO: mean reward -0.900 → +0.850 (+1.750), accuracy 5.0% → 80.0% (+75.0 points)" in text


def test_render_report_missing_values_and_questions_column() -> None:
    evals = {
        "base": {"pass@1": 0.5, "questions": 40.0, "format_errors": 1.5, "mean_f1": math.nan},
        "after ARPO | lr": {"accuracy": 1.0, "tool_calls_per_episode": 2.0},
    }
    text = render_report(evals, paths={}, timings={"total": 7.0, "rollout": 5.0}, title="t")
    assert text.splitlines()[:6] == [
        "t",
        "",
        "Evaluations (held-out questions)",
        "  evaluation       accuracy (pass@1)  mean F1  tool calls / question  format errors  questions",
        "  ---------------  -----------------  -------  ---------------------  -------------  ---------",
        "  base                         50.0%      nan                      -           1.50         40",
    ]
    assert (
        text.splitlines()[6]
        == "  after ARPO | lr             100.0%        -                   2.00              -          -"
    )
    assert "accuracy 50.0% → 100.0% (+50.0 points)" in text
    assert "tool calls" not in text.split("→", 1)[1]  # no comparison of a value the first evaluation lacks
    assert "Files" not in text
    assert text.endswith("Wall time\n  rollout  5.0s\n  total    7.0s\n")  # the total given wins over the sum


def test_render_report_without_evaluations() -> None:
    assert render_report({}, paths={}, timings={}) == "arpo train: report\n\nEvaluations: none were run.\n"


def test_report_markdown() -> None:
    expected = """\
| evaluation | accuracy (pass@1) | mean F1 | tool calls / question | format errors |
|:--|--:|--:|--:|--:|
| base | 20.0% | 0.312 | 0.40 | 5 |
| after SFT | 35.0% | 0.410 | 1.00 | 2 |
| after ARPO | 52.5% | 0.600 | 1.25 | 0 |

base → after ARPO: accuracy 20.0% → 52.5% (+32.5 points), tool calls / question 0.40 → 1.25 (+0.85)

after SFT → after ARPO: accuracy 35.0% → 52.5% (+17.5 points), tool calls / question 1.00 → 1.25 (+0.25)
"""
    assert report_markdown(EVALS) == expected
    full = report_markdown({"a|b": EVALS["base"]}, paths={"plot": Path("p.png")}, timings={"SFT": 65.0})
    assert "| a\\|b | 20.0% |" in full
    assert full.endswith("| file | path |\n|:--|:--|\n| plot | `p.png` |\n\n| phase | wall time |\n|:--|--:|\n"
                         "| SFT | 1m 05s |\n| total | 1m 05s |\n")  # fmt: skip


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.0, "0.0s"), (12.34, "12.3s"), (59.94, "59.9s"), (60.0, "1m 00s"), (605.4, "10m 05s"),
     (3599.6, "1h 00m 00s"), (3725.4, "1h 02m 05s"), (math.inf, "inf")],
)  # fmt: skip
def test_format_seconds(seconds: float, text: str) -> None:
    assert format_seconds(seconds) == text


def test_print_report_with_rich() -> None:
    from rich.console import Console

    console = Console(record=True, width=140, color_system=None)
    print_report(EVALS, paths={"plot": "runs/[bold]x[/bold].png"}, timings=TIMINGS, console=console)
    out = console.export_text()
    assert "after ARPO" in out and "52.5%" in out and "0.312" in out and "1h 03m 53s" in out
    assert "runs/[bold]x[/bold].png" in out  # paths are printed as written, never read as markup


def test_evals_from_metrics(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    sink = JsonlSink(path)
    sink.log(0, {"pass@1": 0.1, "mean_f1": 0.2, "label": "base"}, phase="eval")
    sink.log(1, {"reward_mean": 0.3})
    sink.log(5, {"pass@1": 0.4, "label": "after ARPO"}, phase="eval")
    sink.log(0, {"pass@1": 0.15, "mean_f1": 0.25, "label": "base"}, phase="eval")  # re-run after a resume
    sink.log(6, {"pass@1": 0.5}, phase="eval")
    sink.close()
    evals = evals_from_metrics(path)
    assert list(evals) == ["base", "after ARPO", "step 6"]
    assert evals["base"] == {"step": 0, "pass@1": 0.15, "mean_f1": 0.25}
    assert "accuracy 15.0% → 50.0%" in render_report(evals, paths={}, timings={})


def test_intervals_follow_their_values_and_sft_to_last_is_its_own_line() -> None:
    evals = {
        "after SFT": {"pass@1": 0.5, "pass@1_low": 0.3618, "pass@1_high": 0.6382, "tool_calls_per_episode": 1.5},
        "after ARPO": {"pass@1": 0.625, "pass@1_low": 0.4837, "pass@1_high": 0.7477, "tool_calls_per_episode": 1.0},
    }
    text = render_report(evals)
    assert "50.0% [36.2, 63.8]" in text and "62.5% [48.4, 74.8]" in text
    assert text.count("after SFT → after ARPO") == 1  # first → last is that same pair: one line, not two
