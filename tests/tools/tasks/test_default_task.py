"""The default task of ``arpo train``: seeded, split without leaks, sized as documented, found by its entry point."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from importlib.metadata import entry_points

import pytest

from arpo_core.data.samples import Sample
from arpo_tools.search.index import IndexSettings, SearchIndex
from arpo_tools.search.worldgen import DATA_DIR, PASSAGES_FILE
from arpo_tools.tasks import default_task
from arpo_tools.tasks.default import (
    DATA_SOURCE,
    DEMO_COUNTS,
    KINDS,
    SYSTEM_PROMPT,
    TEST_COUNTS,
    TRAIN_COUNTS,
    _both_pool,
    _chain_pool,
    _search_pool,
    demo_task,
    kind_counts,
    max_counts,
)

PASSAGES = {
    row["id"]: row for row in map(json.loads, (DATA_DIR / PASSAGES_FILE).read_text(encoding="utf-8").splitlines())
}


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SearchIndex]:
    with SearchIndex.open(None, IndexSettings(), tmp_path_factory.mktemp("task-index")) as opened:
        yield opened


def kinds(samples: list[Sample]) -> Counter[str]:
    return Counter(str(s.extra["kind"]) for s in samples)


def test_sizes_and_kinds_are_as_documented() -> None:
    train, test = default_task(), default_task(split="test")
    assert (len(train), len(test)) == (200, 48)
    assert kinds(train) == Counter({"python": 24, "search": 64, "both": 64, "chain": 48}) == Counter(TRAIN_COUNTS)
    assert kinds(test) == Counter({"python": 12, "search": 12, "both": 12, "chain": 12}) == Counter(TEST_COUNTS)
    assert set(KINDS) == set(kinds(train)) == set(kinds(test))
    # the kinds are mixed, not in blocks
    assert len(set(kinds(train[:40]))) == 4


def test_demos_teach_single_tools_and_show_each_composite_template_a_few_times() -> None:
    demos = demo_task()
    assert kinds(demos) == Counter({"python": 65, "search": 65, "both": 20, "chain": 10}) == Counter(DEMO_COUNTS)
    templates = Counter((s.extra["kind"], s.extra["template"]) for s in demos if s.extra["kind"] in ("both", "chain"))
    both = {"age": 4, "hire": 4, "times": 4, "above": 4, "meters": 4}
    chain = {"founder-born": 2, "hq-population": 2, "birthplace-founded": 2, "climber-born": 2, "river-length": 2}
    assert templates == Counter({("both", t): n for t, n in both.items()} | {("chain", t): n for t, n in chain.items()})
    assert demo_task() == demo_task(0) != demo_task(1)
    train_pools = _search_pool(0, "train") + _both_pool(0, "train") + _chain_pool(0, "train")
    assert {s.id for s in demos if s.extra["kind"] != "python"} <= {s.id for s in train_pools}
    assert not {s.question for s in demos} & {s.question for s in default_task(split="test")}


def test_same_seed_same_data_other_seed_other_data() -> None:
    assert default_task() == default_task(None, 0, "train")
    assert default_task(split="test") == default_task(split="test")
    assert default_task(seed=1) != default_task(seed=0)
    assert {s.id for s in default_task(seed=1, split="test")} != {s.id for s in default_task(split="test")}


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_train_and_test_share_no_id_question_or_entity(seed: int) -> None:
    train, test = default_task(seed=seed), default_task(seed=seed, split="test")
    assert len({s.id for s in train}) == len(train) and len({s.id for s in test}) == len(test)
    assert len({s.question for s in train}) == len(train) and len({s.question for s in test}) == len(test)
    assert not {s.id for s in train} & {s.id for s in test}
    assert not {s.question for s in train} & {s.question for s in test}

    # whole pools, not just the drawn questions: no world entity (main passage) is in both splits
    def passages(split: str) -> set[str]:
        pools = _search_pool(seed, split) + _both_pool(seed, split) + _chain_pool(seed, split)
        return {p for s in pools for p in (s.extra["passage_id"], s.extra.get("second_passage_id")) if p}

    train_passages, test_passages = passages("train"), passages("test")
    assert train_passages and test_passages and not train_passages & test_passages
    # the larger python draws stay disjoint too
    big_train = {s.question for s in default_task(600, seed) if s.extra["kind"] == "python"}
    big_test = {s.question for s in default_task(80, seed, "test") if s.extra["kind"] == "python"}
    assert len(big_train) == kind_counts(600)["python"] and not big_train & big_test


def test_samples_carry_the_tag_protocol_prompt_and_one_gold_answer() -> None:
    for split in ("train", "test"):
        for s in default_task(split=split):
            assert [m["role"] for m in s.messages] == ["system", "user"]
            assert s.messages[0]["content"] == SYSTEM_PROMPT
            assert s.question and len(s.ground_truth) == 1 and s.ground_truth[0]
            assert s.data_source == DATA_SOURCE == "builtin:default"
            assert s.extra["split"] == split and s.id.startswith(f"default-{s.extra['kind']}-")
            assert s.ability == ("qa" if s.extra["kind"] in ("search", "chain") else "math")
            tools = [c["tool"] for c in s.extra["calls"]]
            expected = {
                "python": ["python"],
                "search": ["search"],
                "both": ["search", "python"],
                "chain": ["search"] * 2,
            }
            assert tools == expected[s.extra["kind"]]


def test_answers_follow_from_the_facts_and_the_code() -> None:
    for s in default_task() + default_task(split="test"):
        calls = s.extra["calls"]
        if s.extra["kind"] == "python":
            expression = s.question.removeprefix("What is ").removesuffix("? Give the exact integer.")
            assert calls[0]["code"] == f"print({expression})"
            assert s.ground_truth[0] == str(eval(expression))
            continue
        passage = PASSAGES[s.extra["passage_id"]]
        assert s.extra["kind"] == "chain" or s.extra["fact"] in passage["text"]
        assert calls[0]["query"].startswith(passage["title"].removesuffix(" River"))
        if s.extra["kind"] == "search":
            assert s.ground_truth[0] == s.extra["fact"]
        elif s.extra["kind"] == "chain":  # the second hop is an entity the first passage names; its passage answers
            second = PASSAGES[s.extra["second_passage_id"]]
            hop = calls[1]["query"].removesuffix(" " + calls[1]["query"].split()[-1])
            assert (
                second["title"].removesuffix(" River") in hop
                and second["title"].removesuffix(" River") in (passage["text"])
            )
            assert s.ground_truth[0] == s.extra["fact"] and s.extra["fact"] in second["text"]
            assert s.extra["fact"] not in passage["text"]  # answering after the first search is wrong
        else:
            code = calls[1]["code"]
            assert s.extra["fact"] in code and s.ground_truth[0] == str(eval(code.removeprefix("print")))


def test_every_search_of_the_task_finds_its_passage_first(index: SearchIndex) -> None:
    """All questions either split can draw (seed 0: every question of the world is in one of them)."""
    pool = [s for split in ("train", "test") for s in _search_pool(0, split) + _both_pool(0, split)]
    assert len(pool) > 1000
    for s in pool:
        hits = index.search(s.extra["calls"][0]["query"], 1)
        assert hits and hits[0].id == s.extra["passage_id"], s.id
        assert s.extra["fact"] in hits[0].text
    chains = [s for split in ("train", "test") for s in _chain_pool(0, split)]
    assert len(chains) > 200
    for s in chains:
        first, second = (index.search(call["query"], 1) for call in s.extra["calls"])
        assert first[0].id == s.extra["passage_id"] and second[0].id == s.extra["second_passage_id"], s.id
        assert s.extra["fact"] in second[0].text


def test_n_keeps_the_proportions_and_takes_prefixes() -> None:
    for n in (0, 1, 2, 10, 99, 200, 333):
        assert sum(kind_counts(n).values()) == n and sum(kind_counts(n, "test").values()) == n
    assert kind_counts(10) == {"python": 1, "search": 3, "both": 3, "chain": 3}  # 1.2, 3.2, 3.2, 2.4
    assert kind_counts(9, "test") == {"python": 3, "search": 2, "both": 2, "chain": 2}
    assert default_task(0) == []
    small, full = default_task(30), default_task()
    for kind in KINDS:
        of_kind = [s for s in full if s.extra["kind"] == kind]
        assert {s.id for s in small if s.extra["kind"] == kind} <= {s.id for s in of_kind}
    assert len(default_task(80, 3, "test")) == 80


def test_bad_arguments_fail_in_one_sentence() -> None:
    with pytest.raises(ValueError, match="split='dev' is not a split"):
        default_task(10, 0, "dev")
    with pytest.raises(ValueError, match="n=-1 is not a number of samples"):
        default_task(-1)
    most = max_counts(0, "test")
    with pytest.raises(ValueError, match=r"the test split has \d+; pass n=\d+ or less"):
        default_task(10 * (most["search"] + most["both"] + most["chain"]), 0, "test")


def test_entry_point_resolves_and_takes_core_s_calling_convention() -> None:
    (entry,) = [e for e in entry_points(group="arpo.datasets") if e.name == "default"]
    assert entry.value == "arpo_tools.tasks.default:default_task"
    load = entry.load()
    assert load is default_task
    assert load(12, 0) == default_task(12, seed=0)  # builtin.py calls BUILTIN[key](n, seed)
    assert load(None, 0, "test") == default_task(split="test")
