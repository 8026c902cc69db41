"""The reward on the paper's own data: gold answers of the evaluation sets and the reference's RL parquet."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from arpo_core.algo.rewards import (
    RewardConfig,
    check_format,
    compute_reward,
    exact_match,
    f1_score,
    math_equal,
)

DATA = Path(__file__).resolve().parents[3] / ".." / "shared" / "data"


def data_file(relative: str) -> Path:
    path = DATA / relative
    if not path.is_file():
        pytest.skip(f"{path} is absent: the shared data folder beside the repository holds the paper's data.")
    return path


def jsonl(relative: str) -> list[dict[str, Any]]:
    with data_file(relative).open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def protocol_response(answer: str) -> str:
    return (
        "<think>Find it.</think><search>q</search> <result>\nsnippet\n</result>"
        "<python>print(1)</python> <result>\n1\n</result><think>Done.</think>"
        f"<answer>So the answer is \\boxed{{{answer}}}.</answer>"
    )


@pytest.mark.parametrize("name", ["hotpotqa.jsonl", "2wiki.jsonl"])
def test_multi_hop_qa_golds(name: str) -> None:
    rows = jsonl(f"benchmarks/{name}")
    assert len(rows) == 200
    for row in rows:
        golds = row["answer"]
        assert isinstance(golds, list) and golds
        for gold in golds:  # every accepted form scores full marks, alone or boxed in a response
            assert exact_match(f"The {gold.lower()}!", golds) == 1.0
            assert f1_score(gold, golds) == 1.0
        assert compute_reward(protocol_response(golds[-1]), golds).score == pytest.approx(1.1)
        assert compute_reward(protocol_response("xyzzy plugh"), golds).score == 0.0


def test_gsm8k_final_answers() -> None:
    rows = jsonl("benchmarks/gsm8k.jsonl")
    assert len(rows) == 1319
    em_config = RewardConfig(answer_metric="em")
    math_config = RewardConfig(answer_metric="math")
    for i, row in enumerate(rows):
        worked, _, final = row["answer"].rpartition("####")
        assert worked, "every GSM8K solution ends in '#### N'"
        gold = final.strip().replace(",", "")
        assert re.fullmatch(r"-?\d+(\.\d+)?", gold), gold
        assert compute_reward(protocol_response(gold), gold, em_config).score == pytest.approx(1.1)
        if i < 100:  # the symbolic path: a different spelling of the same number
            assert compute_reward(protocol_response(f"{gold}.00"), gold, math_config).math is True
            assert compute_reward(protocol_response(f"{gold}1"), gold, math_config).math is False


def test_math500_answers() -> None:
    answers = [row["answer"] for row in jsonl("benchmarks/math500.jsonl")]
    assert len(answers) == 500
    assert all(math_equal(answer, answer) for answer in answers)
    integers = [answer for answer in answers if re.fullmatch(r"-?\d+", answer)]
    assert len(integers) > 250
    for answer in integers:  # string forms differ, so these go through math-verify
        assert math_equal(f"\\frac{{{2 * int(answer)}}}{{2}}", answer)
        assert not math_equal(str(int(answer) + 1), answer)


def read_parquet(relative: str) -> list[dict[str, Any]]:
    path = data_file(relative)
    parquet = pytest.importorskip(
        "pyarrow.parquet", reason="reading the reference's parquet needs pyarrow, which arpo-core does not install"
    )
    rows: list[dict[str, Any]] = parquet.read_table(path).to_pylist()
    return rows


def test_reference_valid_set_golds() -> None:
    rows = read_parquet("arpo-reference/valid.parquet")
    assert len(rows) == 180
    for row in rows:
        gold = row["reward_model"]["ground_truth"]
        assert compute_reward(protocol_response(gold), gold).score == pytest.approx(1.1)
        if row["ability"] == "math":
            assert math_equal(gold, gold)


def test_reference_prompt_example_passes_the_format_check() -> None:
    # the system prompt's example trajectory is the protocol the reward checks; the release corrupted
    # `\boxed` into a backspace plus "oxed", which is repaired here
    system = read_parquet("arpo-reference/valid.parquet")[0]["prompt"][0]["content"]
    system = system.replace("\x08oxed", "\\boxed")
    start = system.index("<think>", system.index("For example,"))
    end = system.index("</answer>", start) + len("</answer>")
    example = system[start:end]
    assert check_format(example).tool_calls == ("search", "python")
    result = compute_reward(example, "answer here")
    assert result.format_ok and result.score == pytest.approx(1.1)
