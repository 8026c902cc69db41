"""Crash injection: a child is SIGKILLed during ``commit``; afterwards ``latest()`` is never a damaged checkpoint.

The child wraps ``os.fsync``, ``os.rename``, ``os.replace`` and ``shutil.rmtree`` (every durable step of the commit
protocol). The deterministic test kills it (SIGKILL, sent to itself) just before the k-th of those calls, for every
k, so every window between two steps of the protocol is hit; the timed test lets each call sleep a little and kills
the child from outside after random delays. After each kill the parent checks, byte for byte, that ``latest()`` is
the previous complete checkpoint or the new complete one, that ``recover()`` keeps it, and that the step can then be
saved again.
"""

from __future__ import annotations

import itertools
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from ckpt_helpers import payload, read_tree, save_step, write_files

from arpo_backends.checkpoint import CheckpointStore

pytestmark = pytest.mark.slow

CHILD = r"""
import os, shutil, signal, sys, time
from pathlib import Path
from arpo_backends.checkpoint import CheckpointStore

root, step, kill_at, pause = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
calls = 0

def hook(fn):
    def wrapper(*args, **kwargs):
        global calls
        calls += 1
        if calls == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        if pause:
            time.sleep(pause)
        return fn(*args, **kwargs)
    return wrapper

for name in ("fsync", "rename", "replace"):
    setattr(os, name, hook(getattr(os, name)))
shutil.rmtree = hook(shutil.rmtree)
store = CheckpointStore(root, keep_last=2)
print("commit", flush=True)
start = time.perf_counter()
store.commit(step, {"by": "child"})
print(f"done {calls} {time.perf_counter() - start:.4f}", flush=True)
"""

KEEP = 2


def _child(root: Path, step: int, kill_at: int, pause: float = 0.0) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, str(root), str(step), str(kill_at), str(pause)],
        stdout=subprocess.PIPE,
        text=True,
    )


def _run(root: Path, step: int, kill_at: int) -> tuple[int, str]:
    proc = _child(root, step, kill_at)
    out, _ = proc.communicate(timeout=60)
    return proc.returncode, out


def _template_new_step(base: Path, size: int) -> Path:
    """Steps 1..3 committed (keep 2 → 2 and 3 on disk), step 4 staged: committing it prunes step 2."""
    root = base / "new-step"
    store = CheckpointStore(root, keep_last=KEEP)
    for step in (1, 2, 3):
        save_step(store, step, size=size)
    write_files(store.staging(4), payload(4, "new", size))
    return root


def _template_resave(base: Path, size: int) -> Path:
    """Steps 1 and 2 committed, step 2 staged again with other contents (a re-save after a resume)."""
    root = base / "resave"
    store = CheckpointStore(root, keep_last=KEEP)
    save_step(store, 1, size=size)
    save_step(store, 2, tag="old", size=size)
    write_files(store.staging(2), payload(2, "new", size))
    return root


def _check_after_crash(root: Path, allowed: dict[str, dict[str, bytes]], step: int, size: int) -> str:
    """Assert latest() is one of the allowed (label → contents) checkpoints; return its label."""
    store = CheckpointStore(root, keep_last=KEEP)
    found = store.latest()
    assert found is not None, "no checkpoint at all after the crash"
    assert not found.name.startswith(".staging-")
    store.verify(found)
    contents = read_tree(found)
    labels = [label for label, expected in allowed.items() if contents == expected]
    assert labels, f"latest() returned {found.name} whose contents match none of {sorted(allowed)}"
    assert all(not p.name.startswith(".staging-") for p in store.list_complete())
    # recover() (what a restarted rank 0 does first) keeps the same checkpoint, at its proper name
    store.recover()
    after = store.latest()
    assert after is not None and after.name.startswith("step-")
    assert read_tree(after) == contents
    assert not any(p.name.startswith(".") for p in root.iterdir())
    # and the interrupted step can be saved again: exactly one folder for it
    write_files(store.staging(step), payload(step, "again", size))
    final = store.commit(step)
    assert store.latest() == final and read_tree(final) == payload(step, "again", size)
    assert sorted(p.name for p in root.iterdir() if p.name.endswith(f"{step:06d}")) == [final.name]
    return labels[0]


Contents = dict[str, dict[str, bytes]]
SCENARIOS: dict[str, tuple[Callable[[Path, int], Path], int, Callable[[int], Contents]]] = {
    "new-step": (_template_new_step, 4, lambda size: {"old": payload(3, "", size), "new": payload(4, "new", size)}),
    "resave": (_template_resave, 2, lambda size: {"old": payload(2, "old", size), "new": payload(2, "new", size)}),
}


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_sigkill_before_every_durable_step_of_commit(tmp_path: Path, scenario: str) -> None:
    make, step, expected = SCENARIOS[scenario]
    size = 64 * 1024
    template = make(tmp_path / "template", size)
    allowed = expected(size)

    # count the hooked calls of one uninterrupted commit
    dry = tmp_path / "dry"
    shutil.copytree(template, dry)
    rc, out = _run(dry, step, kill_at=0)
    assert rc == 0, out
    total = int(out.split()[-2])
    assert total >= 15  # fsyncs of 5 files, 2 folders, manifest, renames, pointer, prune...

    outcomes: dict[int, str] = {}
    for k in range(1, total + 1):
        root = tmp_path / f"kill-{k}"
        shutil.copytree(template, root)
        rc, out = _run(root, step, kill_at=k)
        assert rc == -signal.SIGKILL, f"kill point {k}: the child was not killed ({rc}, {out!r})"
        outcomes[k] = _check_after_crash(root, allowed, step, size)
        shutil.rmtree(root)
    # the kill points span the commit point: the old checkpoint before the rename, the new one after
    labels = [outcomes[k] for k in sorted(outcomes)]
    assert labels[0] == "old" and labels[-1] == "new"
    flips = sum(1 for a, b in itertools.pairwise(labels) if a != b)
    assert flips == 1, f"the outcome must switch once, at the rename: {labels}"


def test_sigkill_at_random_times_during_a_large_commit(tmp_path: Path) -> None:
    size = 8 * 1024 * 1024  # 2 shards of 8 MiB + 4 MiB optimizer state per step
    template = _template_new_step(tmp_path / "template", size)
    allowed = {"old": payload(3, "", size), "new": payload(4, "new", size)}
    pause = 0.01

    dry = tmp_path / "dry"
    shutil.copytree(template, dry)
    proc = _child(dry, 4, kill_at=0, pause=pause)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    duration = float(out.split()[-1])

    rng = random.Random(1234)
    delays = sorted(rng.uniform(0.0, duration * 1.2) for _ in range(6))
    seen: list[str] = []
    for i, delay in enumerate(delays):
        root = tmp_path / f"kill-{i}"
        shutil.copytree(template, root)
        proc = _child(root, 4, kill_at=0, pause=pause)
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "commit"
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
        seen.append(_check_after_crash(root, allowed, 4, size))
        shutil.rmtree(root)
    assert set(seen) <= {"old", "new"}
