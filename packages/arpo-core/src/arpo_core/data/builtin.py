"""Built-in datasets generated from a seed (no files, no downloads): ``builtin:arith``.

``arith`` — multi-step integer arithmetic a small model cannot do reliably in its head but can with the
Python tool, graded from two-number products to three-operation expressions. Answers are exact integers.
"""

from __future__ import annotations

import random

from arpo_core.data.samples import TAG_PROTOCOL_SYSTEM_PROMPT, Sample

__all__ = ["BUILTIN", "arithmetic_samples", "builtin_samples"]


def arithmetic_samples(
    n: int = 100, seed: int = 0, system_prompt: str | None = TAG_PROTOCOL_SYSTEM_PROMPT
) -> list[Sample]:
    rng = random.Random(seed)
    samples = []
    for i in range(n):
        level = i % 3
        a, b, c, d = (rng.randint(12, 99) for _ in range(4))
        if level == 0:
            expression, value = f"{a} * {b}", a * b
        elif level == 1:
            expression, value = f"{a} * {b} + {c}", a * b + c
        else:
            expression, value = f"({a} + {b}) * {c} - {d}", (a + b) * c - d
        question = f"What is {expression}? Give the exact integer."
        messages = ([{"role": "system", "content": system_prompt}] if system_prompt else []) + [
            {"role": "user", "content": question}
        ]
        samples.append(Sample(f"arith-{seed}-{i}", tuple(messages), (str(value),), "math", "builtin:arith"))
    return samples


BUILTIN = {"arith": arithmetic_samples}


def builtin_samples(name: str, n: int = 100, seed: int = 0) -> list[Sample]:
    key = name.removeprefix("builtin:")
    if key not in BUILTIN:
        raise ValueError(f"no built-in dataset {name!r}; choose one of: {', '.join('builtin:' + k for k in BUILTIN)}.")
    return BUILTIN[key](n, seed)
