"""``bench/learning.py``: bad input refused before any run, and which runs a rerun keeps, resumes or restarts."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import learning


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "train.eval_size=24"], "gives 24 question(s) with train.eval_size=24, fewer than the 48"),
        (["--set", "train.eval_dataset={empty}"], "is empty, and the 95% intervals need at least 48 questions"),
        (["--seeds", "3"], "needs at least 2 seeds"),
        (["--sft-model", "/nowhere"], "--sft-model /nowhere is not a folder"),
        (["--ablation", "--set", "algo.branching.budget=2", "--set", "algo.branching.global_samples=1"], "M ≥ 4"),
    ],
)
def test_bad_input_is_one_sentence_before_any_run(tmp_path: Path, args: list[str], message: str) -> None:
    (tmp_path / "empty.jsonl").write_text("")
    args = [a.format(empty=tmp_path / "empty.jsonl") for a in args]
    with pytest.raises(SystemExit) as exc:
        learning.main([*args, "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "out.md")])
    text = str(exc.value.code)
    assert text.startswith("error: ") and message in text and text.count(". ") == 0, text
    assert not (tmp_path / "runs").exists() and not (tmp_path / "out.md").exists()


def test_a_rerun_keeps_finished_runs_resumes_checkpointed_ones_and_refuses_foreign_ones(tmp_path: Path) -> None:
    cmd = [*learning.python_cmd(), "--no-sft", "--steps", "4", "--output-dir", str(tmp_path)]
    run = tmp_path / "arpo-seed0"
    assert learning.run_state(run, cmd, 4) == "fresh"
    run.mkdir()
    (run / "bench-command.json").write_text(json.dumps(cmd[len(learning.python_cmd()) :]))
    assert learning.run_state(run, cmd, 4) == "fresh"  # stopped before its first checkpoint: start again
    (run / "checkpoints" / "step-000002").mkdir(parents=True)
    assert learning.run_state(run, cmd, 4) == "resume"
    # Ctrl-C in the last step: all steps done, but the final evaluation was skipped — --resume runs only that
    (run / "timings.json").write_text(json.dumps({"total": 9.0, "steps_done": 4}))
    rows = [{"step": 0, "phase": "eval"}, {"step": 3, "phase": "train"}]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert learning.run_state(run, cmd, 4) == "resume"
    with (run / "metrics.jsonl").open("a") as f:
        f.write(json.dumps({"step": 4, "phase": "eval"}) + "\n")
    assert learning.run_state(run, cmd, 4) == "done"
    with pytest.raises(SystemExit, match="made with other options"):
        learning.run_state(run, [*cmd, "--set", "seed=1"], 4)
