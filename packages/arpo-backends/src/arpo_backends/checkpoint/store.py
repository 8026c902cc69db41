"""``CheckpointStore``: atomic, exactly-resumable checkpoint folders that several ranks write into.

Layout of a store's root (a folder on one file system, usually shared by all nodes)::

    root/
      step-000010/            complete checkpoints (committed); each holds manifest.json
      step-000012/
      latest                  pointer file: the folder name of the newest commit ("step-000012")
      .staging-step-000014/   a save in progress (or interrupted): never a checkpoint

The protocol for one save at ``step``:

1. every rank calls ``folder = store.staging(step)`` (idempotent) and writes its files there (DCP shards,
   DeepSpeed's ``save_checkpoint(folder)``, ``save_rng(folder, rank)``, ``TrainerState.save(folder)``...); on a
   multi-node shared file system each rank should ``fsync_paths`` its own files;
2. the trainer's barrier (every rank has finished writing);
3. rank 0 calls ``store.commit(step, extra)``: fsync every file and folder in the staging folder, write
   ``manifest.json`` (last, and fsynced), ``rename`` the staging folder to ``step-000014``, fsync ``root``, replace
   the ``latest`` pointer atomically, prune.

**The rename is the commit point.** ``rename(2)`` of a folder within one file system is atomic: any reader sees
either no ``step-000014`` or the whole folder, with every file already durable (fsynced before) and the manifest
inside it. A crash (or SIGKILL of any rank) at any moment before the rename leaves only a ``.staging-*`` folder,
which ``latest()`` never returns; after it, the checkpoint is complete. The ``fsync`` of ``root`` makes the new
name itself durable: a rename only changes the folder's entries, and without flushing them a power loss can bring
back the old state even though the files' data was on disk. The ``latest`` pointer is a fast path and a record of
which checkpoint was committed last; ``latest()`` verifies what it points to and falls back to scanning
``step-*`` folders when it is missing, garbled or points to a damaged or deleted checkpoint.

Everything that mutates the store (``commit``, ``recover``) runs on rank 0 only; ``staging`` runs on every rank;
``latest``/``list_complete``/``verify``/``resolve`` only read and are safe on every rank.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from arpo_backends.checkpoint._fs import TMP_MARKER, atomic_write_bytes, fsync_dir
from arpo_backends.checkpoint.errors import CheckpointError
from arpo_backends.checkpoint.manifest import (
    DEFAULT_CHECKSUM_MAX_BYTES,
    MANIFEST_NAME,
    Manifest,
    read_manifest,
    verify_checkpoint,
)

__all__ = ["POINTER_NAME", "CheckpointStore", "step_name"]

logger = logging.getLogger(__name__)

POINTER_NAME = "latest"
_STEP_RE = re.compile(r"step-(\d+)")
_STAGING_PREFIX = ".staging-"
_REPLACED_PREFIX = ".replaced-"
_DELETING_PREFIX = ".deleting-"


def step_name(step: int) -> str:
    """The folder name of a committed step: ``step-000012`` (more digits past 999999)."""
    return f"step-{_check_step(step):06d}"


def _check_step(step: int) -> int:
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise ValueError(f"a checkpoint step is an integer >= 0, got {step!r}")
    return step


def _parse(name: str, prefix: str = "") -> int | None:
    if not name.startswith(prefix):
        return None
    match = _STEP_RE.fullmatch(name[len(prefix) :])
    return int(match.group(1)) if match else None


class CheckpointStore:
    """Committed checkpoints under ``root``; see the module docstring for the save protocol.

    ``keep_last``: how many complete checkpoints to keep (the one just committed included); ``None`` keeps all.
    ``checksum_max_bytes``: files up to this size get a blake2b digest in the manifest, larger ones are checked by
    size only (``None``: hash every file; ``0``: none). See ``arpo_backends.checkpoint.manifest`` for the measured
    cost behind the 64 MiB default.
    """

    def __init__(
        self,
        root: Path | str,
        keep_last: int | None = 3,
        *,
        checksum_max_bytes: int | None = DEFAULT_CHECKSUM_MAX_BYTES,
    ) -> None:
        if keep_last is not None and (isinstance(keep_last, bool) or not isinstance(keep_last, int) or keep_last < 1):
            raise ValueError(f"keep_last is an integer >= 1 or None (keep every checkpoint), got {keep_last!r}")
        self.root = Path(root)
        self.keep_last = keep_last
        self.checksum_max_bytes = checksum_max_bytes

    def __repr__(self) -> str:
        return f"CheckpointStore({str(self.root)!r}, keep_last={self.keep_last})"

    # ------------------------------------------------------------------ paths
    def path_for(self, step: int) -> Path:
        """Where step ``step`` lives once committed (it may not exist)."""
        return self.root / step_name(step)

    def staging_path(self, step: int) -> Path:
        """The deterministic staging folder for ``step`` (not created)."""
        return self.root / f"{_STAGING_PREFIX}{step_name(step)}"

    @property
    def pointer_path(self) -> Path:
        return self.root / POINTER_NAME

    def staging(self, step: int) -> Path:
        """Create (if needed) and return the staging folder of ``step``; every rank may call it, in any order.

        The name is deterministic, so all ranks agree on it without communicating. Files already in it (left by an
        interrupted attempt at the same step) are kept and would be committed too: call ``recover()`` on rank 0 at
        start-up, before the trainer's first barrier, to clear them.
        """
        path = self.staging_path(step)
        path.mkdir(parents=True, exist_ok=True)
        return path

    # ------------------------------------------------------------------ commit
    def commit(self, step: int, manifest_extra: Mapping[str, Any] | None = None) -> Path:
        """Make the staging folder of ``step`` a complete checkpoint; rank 0 only, after every rank has written.

        Fsync every file and folder, write ``manifest.json`` (with ``manifest_extra``, which must be JSON
        serialisable), rename the staging folder to ``step-NNNNNN`` (the commit point), fsync the root, update the
        ``latest`` pointer atomically, then prune. If ``step-NNNNNN`` already exists (the step is saved again after a
        resume), the old folder is renamed aside, the new one renamed in, and the old one deleted; until then
        ``latest()`` still finds the old one. Returns the committed folder.
        """
        _check_step(step)
        extra = dict(manifest_extra or {})
        try:
            json.dumps(extra)
        except (TypeError, ValueError) as exc:
            raise CheckpointError(
                f"manifest_extra for step {step} is not JSON serialisable ({exc}); pass plain numbers, strings, "
                "lists and dicts."
            ) from exc
        staging = self.staging_path(step)
        final = self.path_for(step)
        if not staging.is_dir():
            if final.is_dir():
                raise CheckpointError(
                    f"step {step} is already committed at {final} and there is no staging folder {staging.name} to "
                    f"commit; call staging({step}) and write the checkpoint there before committing it again."
                )
            raise CheckpointError(
                f"there is no staging folder {staging} to commit; call staging({step}) on every rank and write the "
                "checkpoint there first."
            )

        # 1. Make every byte and every name under staging durable, then describe it.
        manifest = Manifest.build(staging, step, extra, checksum_max_bytes=self.checksum_max_bytes, fsync=True)
        if not manifest.files:
            raise CheckpointError(
                f"the staging folder {staging} is empty, so there is nothing to commit for step {step}; write the "
                "checkpoint files there (on every rank) before commit."
            )
        for dirpath, _dirnames, _filenames in os.walk(staging, topdown=False):
            fsync_dir(Path(dirpath))
        # 2. The manifest goes in last (temp + fsync + rename inside staging, then fsync of staging).
        atomic_write_bytes(staging / MANIFEST_NAME, manifest.dumps())

        # 3. The commit point: rename staging → step-NNNNNN, then make the new name durable.
        aside = self.root / f"{_REPLACED_PREFIX}{final.name}"
        replacing = final.exists()
        if replacing:
            if aside.exists():  # left by an earlier replace that finished its renames but not its clean-up
                self._remove(aside)
            os.rename(final, aside)
        os.rename(staging, final)
        fsync_dir(self.root)
        # 4. The pointer (temp + fsync + rename, then fsync of root).
        atomic_write_bytes(self.pointer_path, f"{final.name}\n".encode())
        if replacing:
            self._remove(aside)
        # 5. Prune. The checkpoint is committed whatever happens here, so a failure is logged, not raised.
        try:
            self._prune(step)
        except OSError as exc:
            logger.warning(
                "committed %s but could not prune %s (%s); older checkpoints are kept", final, self.root, exc
            )
        logger.info("committed checkpoint %s (%d files, %d bytes)", final, len(manifest.files), manifest.total_bytes)
        return final

    def _remove(self, path: Path) -> None:
        """Delete a folder so that a crash half-way never leaves something that looks like a checkpoint."""
        trash = self.root / f"{_DELETING_PREFIX}{path.name.lstrip('.')}-{uuid.uuid4().hex[:8]}"
        try:
            os.rename(path, trash)
        except FileNotFoundError:
            return
        shutil.rmtree(trash, ignore_errors=True)

    def _prune(self, step: int) -> None:
        """Remove stale staging folders of earlier steps and complete checkpoints beyond ``keep_last``.

        Only checkpoints of *earlier* steps are candidates, so the one just written is never removed, and
        checkpoints of later steps (left by a run that was resumed from an earlier step) are left alone.
        """
        committed: list[int] = []
        later: list[int] = []
        for entry in self._scandir():
            name = entry.name
            if (s := _parse(name)) is not None and entry.is_dir():
                if s < step:
                    committed.append(s)
                elif s > step:
                    later.append(s)
            elif ((s := _parse(name, _STAGING_PREFIX)) is not None and s < step) or (
                (s := _parse(name, _REPLACED_PREFIX)) is not None and s <= step
            ):
                self._remove(Path(entry.path))
            elif name.startswith(_DELETING_PREFIX):
                shutil.rmtree(entry.path, ignore_errors=True)
            elif name.startswith(f".{POINTER_NAME}{TMP_MARKER}"):
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)
        if self.keep_last is not None:
            for s in sorted(committed, reverse=True)[self.keep_last - 1 :]:
                self._remove(self.path_for(s))
        if later:
            logger.warning(
                "%s also holds checkpoints of later steps %s (from a run resumed at an earlier step); they are kept, "
                "and the 'latest' pointer names step %d",
                self.root,
                sorted(later),
                step,
            )

    def recover(self) -> list[Path]:
        """Clean up after a crash; rank 0 at start-up, before the trainer's first barrier, never during a save.

        Puts back a checkpoint that an interrupted re-save had renamed aside, and deletes every staging folder (an
        interrupted save's leftovers, which ``staging()`` would otherwise reuse), half-deleted folders and temporary
        pointer files. Returns what it removed or restored.
        """
        touched: list[Path] = []
        for entry in self._scandir():
            name, path = entry.name, Path(entry.path)
            if (s := _parse(name, _REPLACED_PREFIX)) is not None:
                final = self.path_for(s)
                if final.exists():
                    self._remove(path)
                else:
                    os.rename(path, final)
                    fsync_dir(self.root)
                touched.append(path)
            elif _parse(name, _STAGING_PREFIX) is not None:
                self._remove(path)
                touched.append(path)
            elif name.startswith(_DELETING_PREFIX):
                shutil.rmtree(path, ignore_errors=True)
                touched.append(path)
            elif TMP_MARKER in name and entry.is_file():
                with contextlib.suppress(OSError):
                    os.unlink(path)
                touched.append(path)
        return touched

    # ------------------------------------------------------------------ reading
    def _scandir(self) -> list[os.DirEntry[str]]:
        try:
            with os.scandir(self.root) as entries:
                return list(entries)
        except (FileNotFoundError, NotADirectoryError):
            return []

    def _candidates(self) -> dict[int, Path]:
        """Committed folders by step; a folder renamed aside by an interrupted re-save stands in for a missing one."""
        found: dict[int, Path] = {}
        displaced: dict[int, Path] = {}
        for entry in self._scandir():
            if not entry.is_dir():
                continue
            if (s := _parse(entry.name)) is not None:
                found[s] = Path(entry.path)
            elif (s := _parse(entry.name, _REPLACED_PREFIX)) is not None:
                displaced[s] = Path(entry.path)
        for s, path in displaced.items():
            found.setdefault(s, path)
        return found

    def _valid(self, step: int, path: Path) -> Manifest | None:
        try:
            manifest = verify_checkpoint(path)
        except CheckpointError as exc:
            logger.warning("skipping checkpoint %s: %s", path, exc)
            return None
        if manifest.step != step:
            logger.warning("skipping checkpoint %s: its manifest says step %d", path, manifest.step)
            return None
        return manifest

    def _read_pointer(self) -> int | None:
        try:
            text = self.pointer_path.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            logger.warning("ignoring the unreadable pointer %s (%s); scanning for checkpoints", self.pointer_path, exc)
            return None
        step = _parse(text)
        if step is None:
            logger.warning("ignoring the pointer %s (it holds %r); scanning for checkpoints", self.pointer_path, text)
        return step

    def latest(self) -> Path | None:
        """The newest complete checkpoint, or ``None``; never a staging folder.

        The pointer's target is used when it verifies and no later-step folder was committed after it (a crash
        between the rename and the pointer update leaves such a folder, and it is complete); otherwise the
        ``step-*`` folders are verified newest first.
        """
        candidates = self._candidates()
        newest_first = sorted(candidates, reverse=True)
        pointed = self._read_pointer()
        if pointed is not None and pointed in candidates:
            pointed_manifest = self._valid(pointed, candidates[pointed])
            if pointed_manifest is not None:
                for step in newest_first:
                    if step <= pointed:
                        break
                    manifest = self._valid(step, candidates[step])
                    if manifest is not None and manifest.created_unix >= pointed_manifest.created_unix:
                        return candidates[step]
                return candidates[pointed]
        elif pointed is not None:
            logger.warning("the pointer %s names %s, which is gone; scanning", self.pointer_path, step_name(pointed))
        for step in newest_first:
            if self._valid(step, candidates[step]) is not None:
                return candidates[step]
        return None

    def list_complete(self) -> list[Path]:
        """Every complete checkpoint (verified), oldest step first."""
        candidates = self._candidates()
        return [candidates[s] for s in sorted(candidates) if self._valid(s, candidates[s]) is not None]

    def verify(self, path: Path | str) -> None:
        """Raise ``CheckpointError`` (one sentence: which file is missing or short, and what to do) unless complete."""
        verify_checkpoint(Path(path))

    def manifest(self, path: Path | str) -> Manifest:
        """The manifest of a committed checkpoint (not verified: see ``verify``)."""
        return read_manifest(Path(path))

    # ------------------------------------------------------------------ --resume
    def _incomplete_names(self) -> list[str]:
        names: list[str] = []
        candidates = self._candidates()
        for entry in sorted(self._scandir(), key=lambda e: e.name):
            s = _parse(entry.name)
            damaged = s is not None and entry.is_dir() and self._valid(s, candidates[s]) is None
            if damaged or _parse(entry.name, _STAGING_PREFIX) is not None:
                names.append(entry.name)
        return names

    def _no_latest_error(self) -> CheckpointError:
        incomplete = self._incomplete_names()
        if incomplete:
            return CheckpointError(
                f"no complete checkpoint under {self.root}; the folders found ({', '.join(incomplete)}) are incomplete "
                "(a save was interrupted) or damaged: start without --resume or point --resume to a complete "
                "checkpoint folder."
            )
        what = "does not exist" if not self.root.exists() else "holds no step-* folder"
        return CheckpointError(
            f"no checkpoint under {self.root} (the folder {what}): start without --resume or point --resume to the "
            "folder the checkpoints were saved in."
        )

    def resolve(self, spec: str | int | Path) -> Path:
        """Turn a ``--resume`` value into a complete checkpoint folder, or raise a one-sentence ``CheckpointError``.

        ``"latest"``: ``latest()``; a step number (``7`` or ``"7"``): ``step-000007`` under the root; a path: that
        checkpoint folder (verified), or, for a store's root folder, its latest checkpoint.
        """
        if isinstance(spec, bool):
            raise CheckpointError(f"--resume takes 'latest', a step number or a folder, not {spec!r}.")
        if isinstance(spec, int):
            return self._resolve_step(spec)
        if isinstance(spec, str):
            text = spec.strip()
            if text.lower() == "latest":
                found = self.latest()
                if found is None:
                    raise self._no_latest_error()
                return found
            if text.isdigit():
                return self._resolve_step(int(text))
            if not text:
                raise CheckpointError("--resume is empty; pass 'latest', a step number or a checkpoint folder.")
            spec = Path(text)
        return self._resolve_path(Path(spec).expanduser())

    def _resolve_step(self, step: int) -> Path:
        if step < 0:
            raise CheckpointError(f"--resume {step} is not a step number; steps are integers >= 0.")
        candidates = self._candidates()
        complete = [s for s in sorted(candidates) if self._valid(s, candidates[s]) is not None]
        if step in complete:
            return candidates[step]
        others = (
            f"the complete ones are steps {', '.join(map(str, complete))}: pass one of those or 'latest'"
            if complete
            else "there is no complete checkpoint there: start without --resume"
        )
        if step in candidates:
            try:
                verify_checkpoint(candidates[step])
            except CheckpointError as exc:
                raise CheckpointError(f"the checkpoint of step {step} is damaged ({exc}); {others}.") from exc
        if self.staging_path(step).exists():
            raise CheckpointError(
                f"the save of step {step} under {self.root} was interrupted (only {self.staging_path(step).name} "
                f"exists, never committed); {others}."
            )
        raise CheckpointError(f"no checkpoint of step {step} under {self.root}; {others}.")

    def _resolve_path(self, path: Path) -> Path:
        if not path.exists():
            raise CheckpointError(
                f"--resume {path} does not exist; pass 'latest', a step number or a checkpoint folder under "
                f"{self.root}."
            )
        if _parse(path.name, _STAGING_PREFIX) is not None:
            raise CheckpointError(
                f"{path} is the staging folder of a save that was never committed (it was interrupted), so it is "
                f"incomplete: start without --resume or point --resume to a step-* folder."
            )
        if (path / MANIFEST_NAME).exists() or _parse(path.name) is not None:
            verify_checkpoint(path)
            return path
        if path.is_dir() and (
            any(_parse(e.name) is not None for e in os.scandir(path)) or (path / POINTER_NAME).exists()
        ):
            store = CheckpointStore(path, keep_last=None)
            found = store.latest()
            if found is None:
                raise store._no_latest_error()
            return found
        raise CheckpointError(
            f"{path} is not a checkpoint folder (it has no {MANIFEST_NAME}) nor a folder of checkpoints; pass a "
            "step-* folder, its parent, 'latest' or a step number."
        )
