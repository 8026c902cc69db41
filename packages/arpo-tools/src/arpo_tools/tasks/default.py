r"""The embedded default training task of ``arpo train``: questions a small model answers only with its tools.

Four kinds of question, graded from one tool call to a composition of two:

* ``python`` — integer arithmetic from core's one arithmetic generator (``arpo_core.data.builtin.arithmetic_question``:
  ``"What is 37 * 41 + 5? Give the exact integer."``; two-digit operands, three forms: ``a * b``, ``a * b + c``,
  ``(a + b) * c - d``). One call, ``<python>print(37 * 41 + 5)</python>``.
* ``search`` — one fact about an entity of the embedded fictional world (``arpo_tools/search/data/world.jsonl``), in
  the wording of its questions file (``"What is the population of Stugaenas?"``). One call,
  ``<search>Stugaenas population</search>``; every name is invented, so a model cannot know the answer.
* ``both`` — a fact to look up, then a computation on it (``"How many years before 2025 was Vobotask Works
  founded?"``, ``"What is the population of Stugaenas multiplied by 3?"``). A search, then
  ``<python>print(2025 - 1950)</python>``; an answer that used both tools also earns the reward's tool bonus (+0.1).
* ``chain`` — two hops through the world: the first search names another entity whose fact answers (``"In what
  year was the founder of Vobotask Works born?"``: search the company, read the founder's name in the result,
  search the founder). Answering after the first result gives the wrong fact.

**What the SFT cold start shows, and what it leaves to RL.** The demonstrations (``demo_task``, ``DEMO_COUNTS``)
teach the tag protocol and single-tool use — 65 python and 65 search questions — and show each composite template
only a few times (4 per ``both`` template, 2 per ``chain`` template). After them the model answers single-tool
questions but composes two calls only now and then: the held-out ``both`` and ``chain`` questions need it to decide,
right after a tool result, that the question is not answered yet and which tool to call next — the step where ARPO
measures entropy and branches. The RL prompts (the train split) are mostly of those two kinds.

Sizes (``n=None``): **train 200** = 24 python + 64 search + 64 both + 48 chain (the RL prompts); **test 48** = 12 of
each kind; **demos 160** (``DEMO_COUNTS``). A smaller or larger ``n`` keeps these proportions (largest remainders;
``python`` is unbounded, the world kinds are bounded by the world's entities — ``ValueError`` says the maximum).

Split (for one ``seed``, deterministic, disjoint by sample id and by question text):

* world questions are split **by entity**: a quarter of the entities of each kind (countries, cities, people,
  companies, mountains, rivers), drawn with the seed, are held out; test questions are only about them and train
  questions never are (for ``chain``, both hops), so a test score measures searching, not facts memorised during
  training;
* arithmetic questions are split by a hash of the question text and the seed (a quarter to test).

Every sample is a core ``Sample``: the tag-protocol system prompt, the question, the gold answer (one string),
``ability`` ``"math"`` (python, both) or ``"qa"`` (search), ``data_source`` ``"builtin:default"``, and ``extra``
holding ``kind``, ``split`` and ``calls`` — the tool calls that answer it, ``[{"tool": "search", "query": …},
{"tool": "python", "code": …}]`` (the argument names of core's ``DEFAULT_TAG_TOOLS``), which
:mod:`arpo_tools.tasks.demos` turns into demonstrations. Search-based samples also carry ``passage_id`` (the
passage of the question's entity), ``fact`` and ``template``; ``chain`` samples ``second_passage_id``. Every search
query is the entity's name and the fact's keywords, and BM25 over the embedded corpus ranks that passage first for
every question the task can draw, both hops of a ``chain`` included (a test checks all).

Registered in the entry-point group ``arpo.datasets`` as ``default``; the signature
``default_task(n, seed, split)`` takes ``n`` and ``seed`` positionally, as core calls its ``BUILTIN`` functions.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from arpo_core.data.builtin import arithmetic_question
from arpo_core.data.samples import Sample
from arpo_tools.search import worldgen

SYSTEM_PROMPT = (
    "Answer with the tools. Think inside <think> </think>. Search with <search> query </search>; run Python with "
    "<python> code </python> and print the result. Tool output comes back inside <result> </result>. End with "
    "<answer> \\boxed{answer} </answer>."
)
"""The tag protocol of ``TAG_PROTOCOL_SYSTEM_PROMPT`` in fewer tokens (63 instead of 115 with SmolLM2's
tokenizer): every prompt of the default task carries it, and on a 2-core CPU each token of every rollout and
update counts."""

__all__ = [
    "DATA_SOURCE",
    "DEMO_COUNTS",
    "KINDS",
    "SPLITS",
    "SYSTEM_PROMPT",
    "TEST_COUNTS",
    "TEST_FRACTION",
    "TRAIN_COUNTS",
    "YEAR",
    "default_task",
    "demo_task",
    "kind_counts",
    "max_counts",
]

DATA_SOURCE = "builtin:default"
KINDS = ("python", "search", "both", "chain")
"""The kinds of question, in the order ``kind_counts`` breaks ties."""
SPLITS = ("train", "test")
TRAIN_COUNTS: Mapping[str, int] = {"python": 24, "search": 64, "both": 64, "chain": 48}
"""The train split with ``n=None`` (the RL prompts): 200 questions, weighted to where the cold-started model is
unreliable — when to stop after one search, which second call to make (``python`` is solved by SFT; ``chain``
succeeds in about 2% of its samples after SFT, so it gives little signal per rollout)."""
TEST_COUNTS: Mapping[str, int] = {"python": 12, "search": 12, "both": 12, "chain": 12}
"""The held-out split with ``n=None``: 48 questions, 12 of each kind."""
DEMO_COUNTS: Mapping[str, int] = {"python": 65, "search": 65, "both": 20, "chain": 10}
"""The SFT cold start's questions (``demo_task``, drawn from the train split): mostly single-tool use, and only a
few demonstrations of each composite template (``both``: 4 of each of its 5 templates, ``chain``: 2 of each of its
5), taken round-robin over the templates. Enough for the model to try a second call now and then, too few for it
to do so reliably: that is what RL has to add."""
TEST_FRACTION = 0.25
"""Share of each kind of entity (and of arithmetic questions) held out for the test split."""
YEAR = worldgen.YEAR_NOW
"""The "now" of the world (2025): ``both`` questions count years back from it."""


@dataclass(frozen=True, slots=True)
class _Fact:
    """A one-search question: ``question.format(name)``; the query is the name and ``words``."""

    key: str
    question: str
    words: str
    attribute: str


@dataclass(frozen=True, slots=True)
class _Compute:
    """A search then a computation: ``question.format(name=…, k=…)``; ``code.format(v=…, k=…)`` prints the answer."""

    key: str
    question: str
    words: str
    attribute: str
    code: str
    k: tuple[int, int] | None = None
    """Range (inclusive) of the random operand ``k``; ``None`` when the code uses none."""


# The wording and query words of worldqa's one-search questions, so that the task reads like its questions file.
_FACTS: Mapping[str, tuple[_Fact, ...]] = {
    "companies": (
        _Fact("founded", "In what year was {} founded?", "founded", "founded"),
        _Fact("founder", "Who founded {}?", "founder", "founder"),
        _Fact("employees", "How many people does {} employ?", "employees", "employees"),
    ),
    "cities": (
        _Fact("population", "What is the population of {}?", "population", "population"),
        _Fact("founded", "In what year was the city of {} founded?", "city founded", "founded"),
        _Fact("elevation", "At what elevation in meters does {} lie?", "elevation", "elevation"),
    ),
    "countries": (
        _Fact("capital", "What is the capital of {}?", "capital", "capital"),
        _Fact("currency", "What is the currency of {}?", "currency", "currency"),
    ),
    "people": (
        _Fact("born", "In what year was {} born?", "born", "born"),
        _Fact("birthplace", "In which city was {} born?", "born", "birthplace"),
        _Fact("height", "How tall is {} in centimeters?", "tall centimeters", "height_cm"),
    ),
    "mountains": (_Fact("height", "How high is {} in meters?", "height", "height_m"),),
    "rivers": (_Fact("length", "How long is the {} River in kilometers?", "River length", "length_km"),),
}

_COMPUTES: Mapping[str, tuple[_Compute, ...]] = {
    "companies": (
        _Compute("age", f"How many years before {YEAR} was {{name}} founded?", "founded", "founded",
                 f"print({YEAR} - {{v}})"),
        _Compute("hire", "How many people would {name} employ after hiring {k} more?", "employees", "employees",
                 "print({v} + {k})", (11, 99)),
    ),
    "cities": (
        _Compute("age", f"How many years before {YEAR} was the city of {{name}} founded?", "city founded", "founded",
                 f"print({YEAR} - {{v}})"),
        _Compute("times", "What is the population of {name} multiplied by {k}?", "population", "population",
                 "print({v} * {k})", (2, 9)),
    ),
    "people": (
        _Compute("age", f"How many years before {YEAR} was {{name}} born?", "born", "born", f"print({YEAR} - {{v}})"),
    ),
    "mountains": (
        _Compute("above", "How many meters higher than {k} meters is {name}?", "height", "height_m",
                 "print({v} - {k})", (100, 799)),
    ),
    "rivers": (
        _Compute("meters", "How long is the {name} River in meters?", "River length", "length_km",
                 "print({v} * 1000)"),
    ),
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class _Hop:
    """A two-hop question: ``question.format(name)``; the first search (``name`` + ``words``) finds the entity
    ``link`` names, of kind ``target``; the second (that entity + ``then``) finds its ``attribute``."""

    key: str
    question: str
    words: str
    link: str
    target: str
    then: str
    attribute: str


_HOPS: Mapping[str, tuple[_Hop, ...]] = {
    "companies": (
        _Hop("founder-born", "In what year was the founder of {} born?", "founder", "founder", "people", "born",
             "born"),
        _Hop("hq-population", "What is the population of the city where {} has its headquarters?", "headquarters",
             "hq", "cities", "population", "population"),
    ),
    "people": (
        _Hop("birthplace-founded", "In what year was the city where {} was born founded?", "born", "birthplace",
             "cities", "city founded", "founded"),
    ),
    "mountains": (
        _Hop("climber-born", "In what year was the first climber of {} born?", "first climbed", "climber", "people",
             "born", "born"),
    ),
    "cities": (
        _Hop("river-length", "How long in kilometers is the river that flows through {}?", "city river", "river",
             "rivers", "River length", "length_km"),
    ),
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class _World:
    entities: Mapping[str, Sequence[Any]]
    """Entity kind → entities, in generation order."""
    main: Mapping[str, str]
    """Entity name → id of its main passage."""


@lru_cache(maxsize=1)
def _world() -> _World:
    """The entities behind the embedded corpus (``worldgen`` for its ``SEED``, which the shipped files are)."""
    entities = worldgen.build_entities(random.Random(worldgen.SEED))
    _, main = worldgen.build_passages(entities)
    by_kind = {kind: list(getattr(entities, kind)) for kind in ("companies", "cities", "countries", "people")}
    by_kind |= {"mountains": list(entities.mountains), "rivers": list(entities.rivers)}
    return _World(by_kind, main)


def _rng(seed: int, *parts: str) -> random.Random:
    """A generator for one purpose (string seeds are hashed with SHA-512: the same across runs and platforms)."""
    return random.Random("arpo-default-task:" + ":".join((str(seed), *parts)))


def _held_out(seed: int) -> frozenset[str]:
    """Names of the test entities: ``TEST_FRACTION`` of each kind, rounded up, drawn with ``seed``."""
    names: set[str] = set()
    for kind, entities in _world().entities.items():
        order = [e.name for e in entities]
        _rng(seed, "entities", kind).shuffle(order)
        names.update(order[: math.ceil(len(order) * TEST_FRACTION)])
    return frozenset(names)


def _messages(question: str) -> tuple[Mapping[str, str], ...]:
    return ({"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": question})


def _search_pool(seed: int, split: str) -> list[Sample]:
    """Every one-search question of ``split``, shuffled with ``seed``."""
    world, test = _world(), _held_out(seed)
    pool = []
    for kind, templates in _FACTS.items():
        for entity in world.entities[kind]:
            if (entity.name in test) != (split == "test"):
                continue
            passage = world.main[entity.name]
            for t in templates:
                fact = str(getattr(entity, t.attribute))
                extra = {
                    "kind": "search",
                    "split": split,
                    "calls": [{"tool": "search", "query": f"{entity.name} {t.words}"}],
                    "passage_id": passage,
                    "fact": fact,
                }
                question = t.question.format(entity.name)
                pool.append(
                    Sample(f"default-search-{passage}-{t.key}", _messages(question), (fact,), "qa", DATA_SOURCE, extra)
                )
    _rng(seed, split, "search").shuffle(pool)
    return pool


def _both_pool(seed: int, split: str) -> list[Sample]:
    """Every search-then-compute question of ``split``, shuffled with ``seed`` (operands ``k`` drawn with it)."""
    world, test = _world(), _held_out(seed)
    rng = _rng(seed, split, "both")
    pool = []
    for kind, templates in _COMPUTES.items():
        for entity in world.entities[kind]:
            if (entity.name in test) != (split == "test"):
                continue
            passage = world.main[entity.name]
            for t in templates:
                value = getattr(entity, t.attribute)
                k = rng.randint(*t.k) if t.k is not None else 0
                code = t.code.format(v=value, k=k)
                answer = str(_evaluate(code))
                extra = {
                    "kind": "both",
                    "template": t.key,
                    "split": split,
                    "calls": [
                        {"tool": "search", "query": f"{entity.name} {t.words}"},
                        {"tool": "python", "code": code},
                    ],
                    "passage_id": passage,
                    "fact": str(value),
                }
                ident = f"default-both-{passage}-{t.key}" + (f"-{k}" if t.k is not None else "")
                question = t.question.format(name=entity.name, k=k)
                pool.append(Sample(ident, _messages(question), (answer,), "math", DATA_SOURCE, extra))
    rng.shuffle(pool)
    return pool


def _chain_pool(seed: int, split: str) -> list[Sample]:
    """Every two-search question of ``split`` (both entities in it), shuffled with ``seed``."""
    world, test = _world(), _held_out(seed)
    by_name = {e.name: e for entities in world.entities.values() for e in entities}
    pool = []
    for kind, templates in _HOPS.items():
        for entity in world.entities[kind]:
            if (entity.name in test) != (split == "test"):
                continue
            for t in templates:
                second = by_name[str(getattr(entity, t.link))]
                if (second.name in test) != (split == "test"):
                    continue  # the second hop stays in the split too: no fact of the other split is ever seen
                fact = str(getattr(second, t.attribute))
                extra = {
                    "kind": "chain",
                    "template": t.key,
                    "split": split,
                    "calls": [
                        {"tool": "search", "query": f"{entity.name} {t.words}"},
                        {"tool": "search", "query": f"{second.name} {t.then}"},
                    ],
                    "passage_id": world.main[entity.name],
                    "second_passage_id": world.main[second.name],
                    "fact": fact,
                }
                ident = f"default-chain-{world.main[entity.name]}-{t.key}"
                question = t.question.format(entity.name)
                pool.append(Sample(ident, _messages(question), (fact,), "qa", DATA_SOURCE, extra))
    _rng(seed, split, "chain").shuffle(pool)
    return pool


def _evaluate(code: str) -> int:
    """The value ``print(<a> <op> <b>)`` prints, for the task's own one-operation programs."""
    left, op, right = code.removeprefix("print(").removesuffix(")").split()
    operations: dict[str, Callable[[int, int], int]] = {
        "+": lambda a, b: a + b,
        "-": lambda a, b: a - b,
        "*": lambda a, b: a * b,
    }
    return operations[op](int(left), int(right))


def _in_test(question: str, seed: int) -> bool:
    digest = hashlib.sha256(f"arpo-default-task:{seed}:{question}".encode()).digest()
    return digest[0] < 256 * TEST_FRACTION


def _python_samples(count: int, seed: int, split: str) -> list[Sample]:
    """``count`` distinct arithmetic questions of ``split``: the three forms in turn, operands 12…99."""
    rng = _rng(seed, "python")
    seen: set[str] = set()
    out: list[Sample] = []
    while len(out) < count:
        question, expression, value = arithmetic_question(rng, len(out))
        if question in seen or _in_test(question, seed) != (split == "test"):
            continue
        seen.add(question)
        digest = hashlib.sha256(question.encode()).hexdigest()[:12]
        extra = {"kind": "python", "split": split, "calls": [{"tool": "python", "code": f"print({expression})"}]}
        out.append(Sample(f"default-python-{digest}", _messages(question), (str(value),), "math", DATA_SOURCE, extra))
    return out


def max_counts(seed: int = 0, split: str = "train") -> dict[str, int]:
    """How many questions of each kind ``split`` can hold (``python``: no bound, reported as 10**6)."""
    _check_split(split)
    pools = _pools(seed, split)
    return {"python": 10**6, **{kind: len(pool) for kind, pool in pools.items()}}


def _pools(seed: int, split: str) -> dict[str, list[Sample]]:
    """The world-based kinds' whole pools for ``split``, each shuffled with ``seed``."""
    return {"search": _search_pool(seed, split), "both": _both_pool(seed, split), "chain": _chain_pool(seed, split)}


def kind_counts(n: int | None = None, split: str = "train") -> dict[str, int]:
    """Questions of each kind in a split of ``n`` (default: the documented size), in the default proportions."""
    _check_split(split)
    base = TRAIN_COUNTS if split == "train" else TEST_COUNTS
    if n is None:
        return dict(base)
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"n={n!r} is not a number of samples; pass a non-negative integer, or None for the default.")
    total = sum(base.values())
    exact = {kind: n * base[kind] / total for kind in KINDS}
    counts = {kind: int(exact[kind]) for kind in KINDS}
    by_remainder = sorted(KINDS, key=lambda kind: (-(exact[kind] - counts[kind]), KINDS.index(kind)))
    for kind in by_remainder[: n - sum(counts.values())]:
        counts[kind] += 1
    return counts


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split={split!r} is not a split of the default task; use 'train' or 'test'.")


def default_task(n: int | None = None, seed: int = 0, split: str = "train") -> list[Sample]:
    """The ``split`` of the default task for ``seed``: ``n`` samples (default 200 train, 48 test), kinds mixed.

    Same arguments, same samples in the same order. For one ``seed`` the train and test splits share no sample id,
    no question text and no world entity. A smaller ``n`` takes, of each kind, a prefix of the larger draw.
    """
    counts = kind_counts(n, split)
    samples = _python_samples(counts["python"], seed, split)
    for kind, pool in _pools(seed, split).items():
        if counts[kind] > len(pool):
            most = _largest_n(len(pool), kind, split)
            raise ValueError(
                f"n={n} needs {counts[kind]} {kind!r} questions but the {split} split has {len(pool)}; "
                f"pass n={most} or less."
            )
        samples += pool[: counts[kind]]
    _rng(seed, split, "order").shuffle(samples)
    return samples


def demo_task(seed: int = 0) -> list[Sample]:
    """The SFT cold start's questions: ``DEMO_COUNTS`` of each kind from the train split of ``seed``, mixed.

    The composite kinds take their questions round-robin over their templates (so each template is shown about
    equally often); every world question is of an entity of the train split (the held-out entities never appear).
    They overlap the RL prompts, as a cold start's data would.
    """
    samples = _python_samples(DEMO_COUNTS["python"], seed, "train")
    for kind, pool in _pools(seed, "train").items():
        samples += _round_robin(pool, DEMO_COUNTS[kind]) if kind in ("both", "chain") else pool[: DEMO_COUNTS[kind]]
    _rng(seed, "demos", "order").shuffle(samples)
    return samples


def _round_robin(pool: Sequence[Sample], count: int) -> list[Sample]:
    """``count`` samples of ``pool`` (kept in its order), cycling over the templates in order of first appearance."""
    by_template: dict[str, list[Sample]] = {}
    for sample in pool:
        by_template.setdefault(str(sample.extra["template"]), []).append(sample)
    queues = list(by_template.values())
    out: list[Sample] = []
    while len(out) < count and any(queues):
        for queue in queues:
            if queue and len(out) < count:
                out.append(queue.pop(0))
    return out


def _largest_n(available: int, kind: str, split: str) -> int:
    """The largest ``n`` whose share of ``kind`` fits in ``available``."""
    n = available
    while kind_counts(n + 1, split)[kind] <= available:
        n += 1
    return n
