"""Shared by the checkpoint tests: write a step's files into a staging folder and read a checkpoint back."""

from __future__ import annotations

import hashlib
from pathlib import Path

from arpo_backends.checkpoint import MANIFEST_NAME, CheckpointStore


def payload(step: int, tag: str = "", size: int = 4096) -> dict[str, bytes]:
    """Deterministic, step-specific file contents (a nested folder included, like DCP's ``model/``)."""

    def blob(name: str, n: int) -> bytes:
        seed = f"{tag}:{step}:{name}".encode()
        out = bytearray()
        counter = 0
        while len(out) < n:
            out += hashlib.blake2b(seed + counter.to_bytes(8, "little")).digest()
            counter += 1
        return bytes(out[:n])

    return {
        "model/__0_0.distcp": blob("shard0", size),
        "model/__1_0.distcp": blob("shard1", size),
        "model/.metadata": blob("meta", 300),
        "optim.pt": blob("optim", size // 2),
        "trainer_state.json": f'{{"step": {step}, "tag": "{tag}"}}'.encode(),
    }


def write_files(folder: Path, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def read_tree(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` except the manifest, by ``/``-separated relative path."""
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != MANIFEST_NAME
    }


def save_step(store: CheckpointStore, step: int, tag: str = "", size: int = 4096) -> Path:
    write_files(store.staging(step), payload(step, tag, size))
    return store.commit(step, {"tag": tag})
