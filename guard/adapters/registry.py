"""Tool name -> adapter class, imported lazily so `guard run` never loads the Claude Code code."""
from __future__ import annotations

import importlib

from guard.adapters.base import Adapter

ADAPTERS: dict[str, str] = {
    "claude": "guard.adapters.claude_code:ClaudeCodeAdapter",
    "aider": "guard.adapters.aider:AiderAdapter",
    "codex": "guard.adapters.codex:CodexAdapter",
    "run": "guard.adapters.command:CommandAdapter",
}


def load_adapter(tool: str) -> Adapter:
    module, _, cls = ADAPTERS[tool].partition(":")
    return getattr(importlib.import_module(module), cls)()  # type: ignore[no-any-return]
