"""Shared fixtures: where the paper's data lives (``shared/data`` beside the repository root)."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The paper's evaluation sets and RL data; tests that need them skip when the folder is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"the paper's data folder {SHARED_DATA} is absent (it sits beside the repository root)")
    return SHARED_DATA


@pytest.fixture
def anyio_backend() -> str:
    """Async tests run on asyncio through anyio's pytest plugin (``@pytest.mark.anyio``)."""
    return "asyncio"
