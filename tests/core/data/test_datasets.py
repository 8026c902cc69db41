"""Dataset loading on the paper's own files, and one-sentence errors on broken ones."""

from __future__ import annotations

from pathlib import Path

import pytest

from arpo_core.data import TAG_PROTOCOL_SYSTEM_PROMPT, DatasetError, load_samples
from arpo_core.data.loaders import repair_boxed


@pytest.mark.parametrize(
    ("name", "rows", "first_answer"),
    [
        ("gsm8k.jsonl", 1319, ("18",)),  # "... #### 18" keeps only the number
        ("math500.jsonl", 500, ("\\left( 3, \\frac{\\pi}{2} \\right)",)),
        ("aime25.jsonl", 30, ("70",)),
        ("hotpotqa.jsonl", 200, ("Frank Lowy",)),
    ],
)
def test_evaluation_sets(shared_data: Path, name: str, rows: int, first_answer: tuple[str, ...]) -> None:
    samples = load_samples(shared_data / "benchmarks" / name)
    assert len(samples) == rows
    assert samples[0].ground_truth == first_answer
    assert samples[0].messages[0] == {"role": "system", "content": TAG_PROTOCOL_SYSTEM_PROMPT}
    assert samples[0].question and samples[0].messages[-1]["role"] == "user"


def test_multi_answer_and_limit(shared_data: Path) -> None:
    samples = load_samples(shared_data / "benchmarks" / "2wiki.jsonl", limit=3, system_prompt=None)
    assert len(samples) == 3 and "New York City" in samples[0].ground_truth and samples[0].ability == "qa"
    assert len(samples[0].messages) == 1


def test_reference_parquet_is_repaired(shared_data: Path) -> None:
    pytest.importorskip("pyarrow", reason="reading parquet needs pyarrow (arpo-core[parquet])")
    samples = load_samples(shared_data / "arpo-reference" / "train_10k.parquet", limit=50)
    assert len(samples) == 50
    system = samples[0].messages[0]["content"]
    assert "\x08" not in system and "\\boxed{answer here}" in system
    assert samples[0].extra["repaired_boxed"] >= 1
    assert {s.ability for s in samples} <= {"math", "qa"} and all(s.ground_truth[0] for s in samples)


def test_repair_boxed() -> None:
    assert repair_boxed("x \x08oxed{1} and \x08oxed{2}") == ("x \\boxed{1} and \\boxed{2}", 2)
    assert repair_boxed("clean \\boxed{1}") == ("clean \\boxed{1}", 0)


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        load_samples(tmp_path / "none.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q", "answer": "a"}\n{"text": "no question"}\n')
    with pytest.raises(DatasetError, match=r"bad.jsonl:2 has no question; give one of the fields question"):
        load_samples(bad)
    bad.write_text('{"question": "q"}\n')
    with pytest.raises(DatasetError, match=r"bad.jsonl:1 has no answer"):
        load_samples(bad)
    bad.write_text("{oops\n")
    with pytest.raises(DatasetError, match=r"bad.jsonl:1 is not valid JSON"):
        load_samples(bad)
    csv = tmp_path / "x.csv"
    csv.write_text("a,b\n")
    with pytest.raises(DatasetError, match=r"suffix '.csv'"):
        load_samples(csv)
