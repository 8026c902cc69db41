"""Questions over the fictional world of ``worldgen``, for the default training task, drawn from templates:

* ``fact`` (120)      — one search: "In what year was Drelvix Works founded?"
* ``two_hop`` (40)    — two chained searches: "In what year was the founder of Drelvix Works born?"
* ``arithmetic`` (≈110) — two searches, then a sum or difference (the Python tool): "How many years after X was Y
  founded?"; ``solution`` holds the expression, e.g. ``"1921 - 1874"``.

Every question lists its ``evidence``: for each needed fact, the entity's main passage, a short query that finds
it, and the fact as it is written there. A row: ``{id, kind, question, answer, solution, tools, evidence}``.
"""

from __future__ import annotations

import random
from typing import Any

from arpo_tools.search.worldgen import Entities

__all__ = ["build_questions"]

# kind → (question, query words after the name, attribute); the answer is the entity's attribute.
_FACTS: dict[str, list[tuple[str, str, str]]] = {
    "companies": [
        ("In what year was {} founded?", "founded", "founded"),
        ("Who founded {}?", "founder", "founder"),
        ("How many people does {} employ?", "employees", "employees"),
    ],
    "cities": [
        ("What is the population of {}?", "population", "population"),
        ("In what year was the city of {} founded?", "city founded", "founded"),
        ("At what elevation in meters does {} lie?", "elevation", "elevation"),
    ],
    "countries": [
        ("What is the capital of {}?", "capital", "capital"),
        ("What is the currency of {}?", "currency", "currency"),
    ],
    "people": [
        ("In what year was {} born?", "born", "born"),
        ("In which city was {} born?", "born", "birthplace"),
        ("How tall is {} in centimeters?", "tall centimeters", "height_cm"),
    ],
    "mountains": [("How high is {} in meters?", "height", "height_m")],
    "rivers": [("How long is the {} River in kilometers?", "River length", "length_km")],
}

# (kind, question, link attribute → an entity of target kind, its query words, target kind, words, attribute)
_CHAINS = [
    ("companies", "In what year was the founder of {} born?", "founder", "founder", "people", "born", "born"),
    ("companies", "What is the population of the city where {} has its headquarters?", "hq", "headquarters",
     "cities", "population", "population"),
    ("people", "In which country was {} born?", "birthplace", "born", "cities", "city country", "country"),
    ("cities", "What is the capital of the country in which {} lies?", "country", "city country", "countries",
     "capital", "capital"),
]  # fmt: skip

# (kind, question about entities a and b, query words, attribute, operator, pairs drawn); for "-", a > b.
_PAIRS = [
    ("companies", "How many years after {b} was {a} founded?", "founded", "founded", "-", 30),
    ("cities", "What is the combined population of {a} and {b}?", "population", "population", "+", 25),
    ("mountains", "How many meters higher is {a} than {b}?", "height", "height_m", "-", 20),
    ("companies", "How many people do {a} and {b} employ in total?", "employees", "employees", "+", 15),
]


def build_questions(rng: random.Random, world: Entities, main: dict[str, str]) -> list[dict[str, Any]]:
    """120 facts, 40 chains, then the arithmetic questions (pairs drawn twice or tied are dropped)."""
    kinds: dict[str, list[Any]] = {
        "companies": world.companies,
        "cities": world.cities,
        "countries": world.countries,
        "people": world.people,
        "mountains": world.mountains,
        "rivers": world.rivers,
    }
    by_name = {kind: {e.name: e for e in entities} for kind, entities in kinds.items()}

    def ev(entity: Any, words: str, attribute: str) -> dict[str, str]:
        fact = str(getattr(entity, attribute))
        return {"passage_id": main[entity.name], "query": f"{entity.name} {words}", "fact": fact}

    def row(kind: str, question: str, evidence: list[dict[str, str]], solution: str | None = None) -> dict[str, Any]:
        answer = str(eval_sum(solution)) if solution else evidence[-1]["fact"]
        tools = ["search", "python"] if kind == "arithmetic" else ["search"]
        return {"id": "", "kind": kind, "question": question, "answer": answer, "solution": solution,
                "tools": tools, "evidence": evidence}  # fmt: skip

    facts = [
        row("fact", question.format(e.name), [ev(e, words, attribute)])
        for kind, templates in _FACTS.items()
        for e in kinds[kind]
        for question, words, attribute in templates
    ]
    chains = [
        row("two_hop", question.format(e.name), [ev(e, words, link), ev(by_name[target][getattr(e, link)], w2, attr)])
        for kind, question, link, words, target, w2, attr in _CHAINS
        for e in kinds[kind]
    ]
    sums: dict[str, dict[str, Any]] = {}
    for kind, question, words, attribute, op, draws in _PAIRS:
        for _ in range(draws):
            a, b = sorted(rng.sample(kinds[kind], 2), key=lambda e: (-getattr(e, attribute), e.name))
            if op == "-" and getattr(a, attribute) == getattr(b, attribute):
                continue
            text = question.format(a=a.name, b=b.name)
            solution = f"{getattr(a, attribute)} {op} {getattr(b, attribute)}"
            sums.setdefault(text, row("arithmetic", text, [ev(a, words, attribute), ev(b, words, attribute)], solution))
    for company in rng.sample(world.companies, 20):
        founder = by_name["people"][company.founder]
        text = f"How old was the founder of {company.name} in the year the company was founded?"
        evidence = [ev(company, "founded", "founded"), ev(founder, "born", "born")]
        sums[text] = row("arithmetic", text, evidence, f"{company.founded} - {founder.born}")
    out = rng.sample(facts, 120) + rng.sample(chains, 40) + list(sums.values())
    for number, question_row in enumerate(out, 1):
        question_row["id"] = f"wq-{number:03d}"
    return out


def eval_sum(expression: str) -> int:
    """``"1921 - 1874"`` → 47: two integers and one of + or −."""
    left, op, right = expression.split()
    return int(left) + int(right) if op == "+" else int(left) - int(right)
