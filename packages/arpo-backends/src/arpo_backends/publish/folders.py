"""Versioned folders written atomically: ``directory/<prefix><version:06d>``, older ones pruned.

A server that reloads from a folder must never see half a checkpoint, so a version is written into a hidden
temporary folder beside its final place (same filesystem) and renamed into place only once complete; a failure
removes the temporary folder. ``prune`` keeps the newest ``keep`` versions up to the current one and deletes
older ones; folders of higher versions (left by another run) are not touched. The folder must be visible to the
servers under the same path (one machine, or a shared filesystem).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

__all__ = ["VersionFolders"]


class VersionFolders:
    def __init__(self, directory: Path, prefix: str, keep: int) -> None:
        if keep < 1:
            raise ValueError(f"keep_versions={keep} must be at least 1 (the version being served).")
        self.directory = Path(directory).expanduser().resolve()
        self.prefix = prefix
        self.keep = keep
        self._pattern = re.compile(re.escape(prefix) + r"(\d+)")

    def path(self, version: int) -> Path:
        return self.directory / f"{self.prefix}{version:06d}"

    def write(self, version: int, fill: Callable[[Path], None]) -> Path:
        """Let ``fill`` write into a fresh temporary folder, then rename it to the version's folder."""
        self.directory.mkdir(parents=True, exist_ok=True)
        final = self.path(version)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=self.directory))
        try:
            os.chmod(tmp, 0o755)  # mkdtemp makes it 0700; a server running as another user must read it
            fill(tmp)
            if final.exists():  # the same version published again (a resumed run): replace it
                shutil.rmtree(final)
            os.replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return final

    def versions(self) -> list[int]:
        """Versions with a folder here, ascending."""
        if not self.directory.is_dir():
            return []
        found = []
        for entry in self.directory.iterdir():
            match = self._pattern.fullmatch(entry.name)
            if match and entry.is_dir():
                found.append(int(match.group(1)))
        return sorted(found)

    def prune(self, current: int) -> list[Path]:
        """Delete folders older than the newest ``keep`` versions at or below ``current``; returns them."""
        older = [v for v in self.versions() if v <= current]
        doomed = [self.path(v) for v in older[: max(0, len(older) - self.keep)]]
        for folder in doomed:
            shutil.rmtree(folder, ignore_errors=True)
        return doomed
