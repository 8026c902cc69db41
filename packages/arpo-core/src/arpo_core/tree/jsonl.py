"""Rollout trees as JSONL files: one group per line."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

from arpo_core.tree.group import RolloutTree

__all__ = ["read_jsonl", "write_jsonl"]


def write_jsonl(path: str | Path, trees: Iterable[RolloutTree], *, append: bool = False) -> int:
    """Write one tree per line; returns how many were written."""
    count = 0
    with Path(path).open("a" if append else "w", encoding="utf-8") as fh:
        for tree in trees:
            fh.write(tree.dumps())
            fh.write("\n")
            count += 1
    return count


def read_jsonl(path: str | Path) -> Iterator[RolloutTree]:
    """Read trees written by ``write_jsonl``; a bad line is reported with its line number."""
    with Path(path).open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                yield RolloutTree.loads(line)
            except (ValueError, KeyError, TypeError) as err:
                raise ValueError(f"{path}:{lineno}: not a rollout tree ({err}).") from err
