"""The embedded default corpus: an encyclopedia of a fictional world, generated from a seed, and questions over it.

Every name is invented (three syllables drawn from a seeded ``random.Random``), so a model cannot know the
answers: it has to search. The world has countries, cities, people, companies, mountains and rivers whose facts
refer to each other (a company's founder is a person with a birth year; a city lies in a country and on a river),
so that questions (``worldqa.py``) can need one search, two chained searches, or searches plus arithmetic.
Each entity has a main passage with its key facts (id ``<kind>-NNN-a``) and most have a second one (``-b``) whose
other years and places are distractors, as in a real encyclopedia.

``python -m arpo_tools.search.worldgen [--seed N] [--out DIR]`` rewrites ``world.jsonl`` (passages) and
``world_questions.jsonl``; a test checks the shipped files equal this generator's output for ``SEED``.
"""

from __future__ import annotations

import argparse
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["DATA_DIR", "PASSAGES_FILE", "QUESTIONS_FILE", "SEED", "World", "generate", "main", "to_jsonl", "write"]

SEED = 2507
DATA_DIR = Path(__file__).resolve().parent / "data"
PASSAGES_FILE = "world.jsonl"
QUESTIONS_FILE = "world_questions.jsonl"
YEAR_NOW = 2025

_ONSETS = "b br d dr f g gr h k kr l m n p pr r s sk st t tr v z th sh qu w".split()  # noqa: SIM905
_VOWELS = "a e i o u a e o ae ei ou ia".split()  # noqa: SIM905
_CODAS = ["", "", "", "n", "r", "l", "s", "m", "th", "nd", "rn", "sk", "x", "v"]
_OCCUPATIONS = ["painter", "engineer", "astronomer", "novelist", "composer", "architect", "botanist", "chemist"]
_INDUSTRIES = {"Works": "steel", "Foods": "food", "Motors": "automobile", "Shipping": "shipping"}
_INDUSTRIES |= {"Textiles": "textile", "Press": "publishing", "Mining": "mining", "Optics": "optics"}
_INDUSTRIES |= {"Pharma": "pharmaceutical", "Aviation": "aircraft"}
_FEATURES = ["glass bridges", "spice markets", "clock towers", "salt caves", "canal boats", "rose gardens"]
_LANDMARKS = ["Great Hall", "Lantern Gate", "Old Observatory", "Harbour Tower", "Iron Bridge", "Grand Theatre"]
_PRIZES = ["Gold Compass", "Silver Quill", "Amber Star", "Crystal Lyre"]
_COMPASS = ["northern", "southern", "eastern", "western"]
_RESERVED = {"banana", "bikini", "casino", "domino", "kimono", "potato", "salami", "sonata", "tomato", "tornado"}
_RESERVED |= {"gorilla", "lasagna", "vanilla", "volcano"}  # English words a three-syllable draw could spell


@dataclass
class Country:
    name: str
    continent: str
    coast: str
    population: int
    independence: int
    currency: str
    language: str
    election: int = 0
    capital: str = ""
    rivers: list[str] = field(default_factory=list)
    cities: list[str] = field(default_factory=list)


@dataclass
class City:
    name: str
    country: str
    river: str
    founded: int
    population: int
    elevation: int
    feature: str
    landmark: str
    landmark_year: int
    mayor: str = ""


@dataclass
class Person:
    name: str
    born: int
    birthplace: str
    occupation: str
    height_cm: int
    study_city: str
    prize: str
    prize_year: int


@dataclass
class Company:
    name: str
    industry: str
    founded: int
    founder: str
    hq: str
    employees: int
    factory_city: str
    factory_year: int


@dataclass
class Mountain:
    name: str
    country: str
    height_m: int
    first_ascent: int
    climber: str


@dataclass
class River:
    name: str
    country: str
    length_km: int
    sea: str


@dataclass
class Entities:
    """Everything in the world, by kind, in generation order."""

    countries: list[Country]
    cities: list[City]
    people: list[Person]
    companies: list[Company]
    mountains: list[Mountain]
    rivers: list[River]


@dataclass
class World:
    """What ``generate`` returns: the passages and questions, each a JSON-ready dict in file order."""

    passages: list[dict[str, str]]
    questions: list[dict[str, Any]]


class _Names:
    """Unique invented words: no two entities share a name token, and none is a common English word."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.taken: set[str] = set()

    def word(self) -> str:
        """Three syllables (two-syllable draws kept spelling English words: "ruler", "note")."""
        while True:
            parts = [self.rng.choice(_ONSETS) + self.rng.choice(_VOWELS) for _ in range(3)]
            parts[-1] += self.rng.choice(_CODAS)
            word = "".join(parts)
            if len(word) <= 11 and word not in self.taken and word not in _RESERVED:
                self.taken.add(word)
                return word.capitalize()


def build_entities(rng: random.Random) -> Entities:
    """12 countries (2 rivers, 5 cities each), 150 people, 80 companies (one per founder), 30 mountains."""
    names = _Names(rng)
    continents = [names.word() for _ in range(3)]
    seas = [names.word() for _ in range(6)]
    countries = []
    for _ in range(12):
        name, continent, coast = names.word(), rng.choice(continents), rng.choice(_COMPASS)
        population, independence = rng.randrange(800_000, 60_000_000), rng.randrange(1600, 1990)
        currency, language = names.word().lower(), names.word() + "ese"
        countries.append(Country(name, continent, coast, population, independence, currency, language))
    rivers: list[River] = []
    for country in countries:
        country.election = rng.randrange(max(country.independence, 1800) + 1, 2000)
        for _ in range(2):
            rivers.append(River(names.word(), country.name, rng.randrange(40, 3200), rng.choice(seas)))
            country.rivers.append(rivers[-1].name)
    cities: list[City] = []
    for country in countries:
        for _ in range(5):
            name, river, founded = names.word(), rng.choice(country.rivers), rng.randrange(800, 1950)
            population, elevation = rng.randrange(5_000, 3_000_000), rng.randrange(2, 2800)
            feature, landmark = rng.choice(_FEATURES), rng.choice(_LANDMARKS)
            landmark_year = rng.randrange(founded + 20, 2000)
            cities.append(
                City(name, country.name, river, founded, population, elevation, feature, landmark, landmark_year)
            )
            country.cities.append(name)
        country.capital = country.cities[0]
    first_names = [names.word() for _ in range(60)]
    people: list[Person] = []
    for _ in range(150):
        name, born = f"{rng.choice(first_names)} {names.word()}", rng.randrange(1790, 2000)
        birthplace, occupation, height = rng.choice(cities).name, rng.choice(_OCCUPATIONS), rng.randrange(150, 206)
        study_city, prize = rng.choice(cities).name, rng.choice(_PRIZES)
        prize_year = born + rng.randrange(25, 26 + max(0, min(60, YEAR_NOW - born - 25)))
        people.append(Person(name, born, birthplace, occupation, height, study_city, prize, prize_year))
    for city in cities:
        city.mayor = rng.choice([p for p in people if p.born < YEAR_NOW - 30]).name
    companies: list[Company] = []
    for founder in rng.sample(people, 80):
        suffix = rng.choice(list(_INDUSTRIES))
        founded = rng.randrange(founder.born + 20, min(founder.born + 70, YEAR_NOW))
        hq, employees, factory_city = rng.choice(cities).name, rng.randrange(12, 90_000), rng.choice(cities).name
        factory_year = rng.randrange(founded + 1, YEAR_NOW + 1)
        name = f"{names.word()} {suffix}"
        companies.append(
            Company(name, _INDUSTRIES[suffix], founded, founder.name, hq, employees, factory_city, factory_year)
        )
    mountains: list[Mountain] = []
    for _ in range(30):
        climber = rng.choice(people)
        name, country_name, height = f"Mount {names.word()}", rng.choice(countries).name, rng.randrange(800, 8400)
        first_ascent = rng.randrange(climber.born + 18, min(climber.born + 60, YEAR_NOW))
        mountains.append(Mountain(name, country_name, height, first_ascent, climber.name))
    return Entities(countries, cities, people, companies, mountains, rivers)


def build_passages(world: Entities) -> tuple[list[dict[str, str]], dict[str, str]]:
    """The passages, and the id of each entity's main passage by entity name."""
    rows: list[dict[str, str]] = []
    main: dict[str, str] = {}

    def add(pid: str, title: str, text: str, entity: str = "") -> None:
        rows.append({"id": pid, "title": title, "text": text})
        if entity:
            main[entity] = pid

    for i, c in enumerate(world.countries, 1):
        add(f"country-{i:03d}-a", c.name, f"{c.name} is a country on the {c.coast} coast of the continent of "
            f"{c.continent}. Its capital is {c.capital}, and it has a population of {c.population}. {c.name} became "
            f"independent in {c.independence}. The official language is {c.language} and the currency is the "
            f"{c.currency}.", c.name)  # fmt: skip
        add(f"country-{i:03d}-b", f"{c.name}: history and geography", f"{c.name} held its first national election "
            f"in {c.election}; its parliament meets in {c.capital}. The main rivers of {c.name} are the "
            f"{c.rivers[0]} River and the {c.rivers[1]} River. Other cities of {c.name} include "
            f"{', '.join(c.cities[1:])}.")  # fmt: skip
    based: dict[str, list[str]] = {}
    for co in world.companies:
        based.setdefault(co.hq, []).append(co.name)
    for i, t in enumerate(world.cities, 1):
        add(f"city-{i:03d}-a", t.name, f"{t.name} is a city in {t.country}, on the banks of the {t.river} River. It "
            f"was founded in {t.founded} and has a population of {t.population}. The city lies at an elevation of "
            f"{t.elevation} meters above sea level. Its mayor is {t.mayor}.", t.name)  # fmt: skip
        firms = f" Companies based in {t.name} include {', '.join(based[t.name])}." if t.name in based else ""
        add(f"city-{i:03d}-b", f"{t.name}: landmarks", f"{t.name} is known for its {t.feature}. The {t.landmark} of "
            f"{t.name} was completed in {t.landmark_year}.{firms}")  # fmt: skip
    founded_by = {co.founder: co.name for co in world.companies}
    for i, p in enumerate(world.people, 1):
        known = f" {p.name} founded {founded_by[p.name]}." if p.name in founded_by else ""
        add(f"person-{i:03d}-a", p.name, f"{p.name} (born {p.born} in {p.birthplace}) is a {p.occupation}. "
            f"{p.name} is {p.height_cm} centimeters tall.{known}", p.name)  # fmt: skip
        add(f"person-{i:03d}-b", f"{p.name}: career", f"{p.name} studied in {p.study_city}. In {p.prize_year}, "
            f"{p.name} received the {p.prize} Prize for work as a {p.occupation}.")  # fmt: skip
    for i, co in enumerate(world.companies, 1):
        add(f"company-{i:03d}-a", co.name, f"{co.name} is a {co.industry} company founded in {co.founded} by "
            f"{co.founder}. Its headquarters are in {co.hq}, and it employs {co.employees} people.",
            co.name)  # fmt: skip
        add(f"company-{i:03d}-b", f"{co.name}: history", f"In {co.factory_year}, {co.name} opened a second factory "
            f"in {co.factory_city}. The company began in {co.hq} as a small {co.industry} workshop.")  # fmt: skip
    for i, m in enumerate(world.mountains, 1):
        add(f"mountain-{i:03d}-a", m.name, f"{m.name} is a mountain in {m.country} with a height of {m.height_m} "
            f"meters. It was first climbed in {m.first_ascent} by {m.climber}.", m.name)  # fmt: skip
    along: dict[str, list[str]] = {}
    for t in world.cities:
        along.setdefault(t.river, []).append(t.name)
    for i, r in enumerate(world.rivers, 1):
        passing = f", passing through {', '.join(along[r.name])}" if r.name in along else ""
        add(f"river-{i:03d}-a", f"{r.name} River", f"The {r.name} River is {r.length_km} kilometers long. It rises "
            f"in {r.country} and flows into the {r.sea} Sea{passing}.", r.name)  # fmt: skip
    return rows, main


def generate(seed: int = SEED) -> World:
    """The world for ``seed``: same seed, same passages and questions, byte for byte."""
    from arpo_tools.search.worldqa import build_questions

    rng = random.Random(seed)
    entities = build_entities(rng)
    passages, main = build_passages(entities)
    return World(passages=passages, questions=build_questions(rng, entities, main))


def to_jsonl(rows: Sequence[dict[str, Any]]) -> str:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


def write(out_dir: Path = DATA_DIR, seed: int = SEED) -> World:
    world = generate(seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / PASSAGES_FILE).write_text(to_jsonl(world.passages), encoding="utf-8")
    (out_dir / QUESTIONS_FILE).write_text(to_jsonl(world.questions), encoding="utf-8")
    return world


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m arpo_tools.search.worldgen", description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=SEED, help=f"world seed (default {SEED}, the shipped one)")
    parser.add_argument("--out", type=Path, default=DATA_DIR, help="folder for the two JSONL files")
    args = parser.parse_args(argv)
    world = write(args.out, args.seed)
    print(f"{len(world.passages)} passages, {len(world.questions)} questions → {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
