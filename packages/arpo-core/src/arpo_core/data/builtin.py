"""Built-in datasets generated from a seed (no files, no downloads): ``builtin:arith``.

``arith`` — multi-step integer arithmetic a small model cannot do reliably in its head but can with the
Python tool, graded from two-number products to three-operation expressions. Answers are exact integers.
"""

from __future__ import annotations

import random
from typing import Any

from arpo_core.data.samples import TAG_PROTOCOL_SYSTEM_PROMPT, Sample

__all__ = ["ARITHMETIC_FORMS", "BUILTIN", "arithmetic_question", "arithmetic_samples", "builtin_samples"]

ARITHMETIC_FORMS = 3
"""Graded forms: ``a * b``, ``a * b + c``, ``(a + b) * c - d`` (operands 12…99)."""


def arithmetic_question(rng: random.Random, level: int) -> tuple[str, str, int]:
    """``(question, expression, value)`` of form ``level % ARITHMETIC_FORMS``, operands drawn from ``rng``.

    The one arithmetic generator of arpo: ``builtin:arith`` here and the default task's ``python`` questions
    (arpo-tools) both draw from it."""
    a, b, c, d = (rng.randint(12, 99) for _ in range(4))
    form = level % ARITHMETIC_FORMS
    if form == 0:
        expression, value = f"{a} * {b}", a * b
    elif form == 1:
        expression, value = f"{a} * {b} + {c}", a * b + c
    else:
        expression, value = f"({a} + {b}) * {c} - {d}", (a + b) * c - d
    return f"What is {expression}? Give the exact integer.", expression, value


def arithmetic_samples(
    n: int = 100, seed: int = 0, system_prompt: str | None = TAG_PROTOCOL_SYSTEM_PROMPT
) -> list[Sample]:
    rng = random.Random(seed)
    samples = []
    for i in range(n):
        question, _, value = arithmetic_question(rng, i)
        messages = ([{"role": "system", "content": system_prompt}] if system_prompt else []) + [
            {"role": "user", "content": question}
        ]
        samples.append(Sample(f"arith-{seed}-{i}", tuple(messages), (str(value),), "math", "builtin:arith"))
    return samples


BUILTIN = {"arith": arithmetic_samples}


def _registered() -> dict[str, Any]:
    """Datasets other packages register in the ``arpo.datasets`` entry-point group (arpo-tools: ``default``)."""
    from importlib.metadata import entry_points

    return {ep.name: ep for ep in entry_points(group="arpo.datasets")}


def builtin_names() -> list[str]:
    return sorted({*BUILTIN, *_registered()})


def builtin_samples(name: str, n: int | None = 100, seed: int = 0, split: str = "train") -> list[Sample]:
    """``builtin:NAME`` samples: core's own (``arith``) or a registered one (``default``: arpo-tools' task).

    ``split`` selects a registered dataset's held-out part (``test``); core's generated sets have no split, so
    their ``test`` split is drawn with another seed."""
    key = name.removeprefix("builtin:")
    registered = _registered()
    if key in BUILTIN:
        return BUILTIN[key](100 if n is None else n, seed if split == "train" else seed + 1_000_003)
    if key in registered:
        samples: list[Sample] = registered[key].load()(n, seed, split)
        return samples
    choices = ", ".join("builtin:" + k for k in builtin_names())
    raise ValueError(f"no built-in dataset {name!r}; choose one of: {choices}.")
