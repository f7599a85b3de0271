"""Where the pinned agents installed by scripts/install-test-deps live."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _tool(env_var: str, default: Path, what: str) -> str:
    path = os.environ.get(env_var) or str(default)
    if not Path(path).exists():
        msg = f"{what} not installed at {path}: run scripts/install-test-deps"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return path


def claude_bin() -> str:
    return _tool("GUARD_TEST_CLAUDE", REPO / ".tools/claude/node_modules/.bin/claude", "Claude Code")


def aider_bin() -> str:
    return _tool("GUARD_TEST_AIDER", REPO / ".tools/aider-venv/bin/aider", "aider")


def codex_bin() -> str:
    return _tool("GUARD_TEST_CODEX", REPO / ".tools/codex/node_modules/.bin/codex", "Codex CLI")
