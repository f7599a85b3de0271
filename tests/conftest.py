from __future__ import annotations

import uuid
from pathlib import Path

import pytest


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A GUARD_HOME of the test's own: no real state is ever touched."""
    h = tmp_path / "guard-home"
    h.mkdir()
    return h


@pytest.fixture
def tag() -> str:
    """A unique word to find this test's processes by."""
    return "t" + uuid.uuid4().hex[:10]
