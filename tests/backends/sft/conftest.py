"""Fixtures of the SFT tests: the tiny model's tokenizer (a ChatML template that renders tools and tool calls)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from arpo_backends.batching import TrajectorySample

TrainedRuns = Callable[[Any, TrajectorySample], list[str]]


@pytest.fixture(scope="session")
def tiny_tokenizer() -> Any:
    from transformers import AutoTokenizer

    from arpo_backends.models.tiny import build_tiny_model

    return AutoTokenizer.from_pretrained(build_tiny_model())


def _trained_runs(tokenizer: Any, sample: TrajectorySample) -> list[str]:
    runs: list[str] = []
    current: list[int] = []
    for token, trained in zip(sample.token_ids.tolist(), sample.loss_mask.tolist(), strict=True):
        if trained:
            current.append(token)
        elif current:
            runs.append(tokenizer.decode(current))
            current = []
    if current:
        runs.append(tokenizer.decode(current))
    return runs


@pytest.fixture(scope="session")
def trained_runs() -> TrainedRuns:
    """``trained_runs(tokenizer, sample)``: the decoded text of each maximal run of loss tokens, in order."""
    return _trained_runs
