"""Shared test fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REAL = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "real"


@pytest.fixture(scope="session")
def real_dir() -> Path:
    """The real feed fixtures (read in place, never copied); skips when absent."""
    path = Path(os.environ.get("CATALYSTS_REAL_FIXTURES") or REAL)
    if not path.is_dir():
        pytest.skip(f"real feed fixtures not found at {path} (set CATALYSTS_REAL_FIXTURES)")
    return path
