"""Loading samples from the formats the ARPO release uses, with every field mapped explicitly.

* verl parquet (the reference's RL data, e.g. ``train_10k.parquet``): ``prompt`` (chat list), ``ability``,
  ``reward_model.ground_truth``, ``extra_info.index``, ``data_source``. The release's prompts contain
  ``\\boxed`` corrupted into a backspace + ``oxed`` (a ``\\b`` escape gone wrong); it is repaired on load and
  counted in ``Sample.extra["repaired_boxed"]``.
* JSONL evaluation sets: ``question`` or ``problem``; ``answer`` as a string, a number or a list of accepted
  strings; GSM8K's worked solutions ending in ``#### N`` keep only ``N``.

A row without a question or an answer is an error naming the file, the row and the fields expected.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from arpo_core.data.samples import TAG_PROTOCOL_SYSTEM_PROMPT, Sample

__all__ = ["DatasetError", "load_samples", "repair_boxed"]

QUESTION_FIELDS = ("question", "problem", "prompt")
ANSWER_FIELDS = ("answer", "ground_truth", "solution")


class DatasetError(ValueError):
    """A dataset that cannot be used; ``str()`` names the file, the row and the fix."""


def repair_boxed(text: str) -> tuple[str, int]:
    """``text`` with ``\\x08oxed`` (a mangled ``\\boxed``) put back, and how many were repaired."""
    count = text.count("\x08oxed")
    return (text.replace("\x08oxed", "\\boxed"), count) if count else (text, 0)


def _answers(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        raise DatasetError(f"{where} has no answer; give one of the fields {', '.join(ANSWER_FIELDS)}.")
    if isinstance(value, (list, tuple)):
        answers = tuple(str(v) for v in value)
        if not answers:
            raise DatasetError(f"{where} has an empty answer list; give at least one accepted answer.")
        return answers
    text = str(value)
    if "####" in text:  # GSM8K: a worked solution, then "#### N"
        text = text.rsplit("####", 1)[1].strip().replace(",", "")
    return (text,)


def _from_jsonl_row(row: Mapping[str, Any], where: str, system_prompt: str | None, source: str) -> Sample:
    question = next((row[f] for f in QUESTION_FIELDS if isinstance(row.get(f), str)), None)
    if question is None:
        raise DatasetError(f"{where} has no question; give one of the fields {', '.join(QUESTION_FIELDS)}.")
    answer = next((row[f] for f in ANSWER_FIELDS if f in row), None)
    messages: list[dict[str, str]] = []
    if system_prompt:
        messages.append({"role": "system", "content": system_prompt})
    messages.append({"role": "user", "content": question})
    ident = str(row.get("id", row.get("idx", "")))
    ability = row.get("ability") or ("qa" if isinstance(answer, list) else "math")
    return Sample(ident, tuple(messages), _answers(answer, where), str(ability), source)


def _from_verl_row(row: Mapping[str, Any], where: str, source: str) -> Sample:
    prompt = row.get("prompt")
    if isinstance(prompt, str):
        prompt = [{"role": "user", "content": prompt}]
    if not isinstance(prompt, (list, tuple)) or not prompt:
        raise DatasetError(f"{where} has no 'prompt' chat list; verl rows need prompt, reward_model, ability.")
    repaired = 0
    messages = []
    for message in prompt:
        content, n = repair_boxed(str(message.get("content", "")))
        repaired += n
        messages.append({"role": str(message.get("role", "user")), "content": content})
    reward_model = row.get("reward_model") or {}
    extra = row.get("extra_info") or {}
    ident = str(extra.get("index", "")) if isinstance(extra, Mapping) else ""
    return Sample(
        ident,
        tuple(messages),
        _answers(reward_model.get("ground_truth") if isinstance(reward_model, Mapping) else None, where),
        str(row.get("ability") or "qa"),
        str(row.get("data_source") or source),
        {"repaired_boxed": repaired} if repaired else {},
    )


def load_samples(
    path: str | Path, *, system_prompt: str | None = TAG_PROTOCOL_SYSTEM_PROMPT, limit: int | None = None
) -> list[Sample]:
    """Samples of a ``.jsonl``/``.json`` evaluation set or a verl ``.parquet`` file (first ``limit`` rows)."""
    p = Path(path)
    if not p.is_file():
        raise DatasetError(f"dataset {p} does not exist; pass a .jsonl or .parquet file.")
    source = p.stem
    samples: list[Sample] = []
    if p.suffix == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise DatasetError(
                f"reading {p.name} needs pyarrow: pip install 'arpo-core[parquet]' (or pip install pyarrow)."
            ) from None
        for i, row in enumerate(pq.read_table(p).to_pylist()):
            if limit is not None and i >= limit:
                break
            samples.append(_from_verl_row(row, f"{p}: row {i}", source))
        return samples
    if p.suffix not in (".jsonl", ".json"):
        raise DatasetError(f"dataset {p} has suffix {p.suffix!r}; use .jsonl (one object per line) or .parquet.")
    with p.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if limit is not None and len(samples) >= limit:
                break
            if not line.strip():
                continue
            where = f"{p}:{lineno}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise DatasetError(f"{where} is not valid JSON ({err.msg}); write one JSON object per line.") from None
            if not isinstance(row, dict):
                raise DatasetError(f"{where} is a {type(row).__name__}, not a JSON object.")
            if isinstance(row.get("prompt"), list):
                samples.append(_from_verl_row(row, where, source))
            else:
                sample = _from_jsonl_row(row, where, system_prompt, source)
                samples.append(sample if sample.id else Sample(str(lineno - 1), *_rest(sample)))
    return samples


def _rest(sample: Sample) -> tuple[Any, ...]:
    return (sample.messages, sample.ground_truth, sample.ability, sample.data_source, sample.extra)
