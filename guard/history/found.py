"""What a history source yields: one model call, with the session it belongs to."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from guard.usage import UsageEvent

# several times json's speed, and parsing is most of an import
loads: Callable[[bytes], Any] = orjson.loads

RUN_PREFIX = "imp-"    # ids of imported runs; live runs have uuid hex ids


@dataclass(frozen=True)
class Found:
    run_id: str          # one imported run per session (a Claude session, a Codex rollout, an aider launch)
    tool: str            # claude | codex | aider
    cwd: str             # where the session ran: its folder name is the imported run's task
    event: UsageEvent


def iso_ts(value: Any, default: float) -> float:
    """A transcript's ISO-8601 timestamp (`2026-11-22T06:58:14.762Z`) as epoch seconds."""
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value).timestamp()
        except ValueError:
            pass
    return default
