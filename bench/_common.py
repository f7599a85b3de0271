"""Shared by the bench scripts: a private GUARD_HOME and percentiles."""
from __future__ import annotations

import os
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def bench_env(home: Path | None = None) -> dict[str, str]:
    home = home or Path(tempfile.mkdtemp(prefix="guard-bench-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("GUARD_")}
    env.update(GUARD_HOME=str(home), XDG_CONFIG_HOME=str(home / "config"), GUARD_DEVELOPER="bench")
    return env


def pct(values: list[float], p: float) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(sorted(values), n=100, method="inclusive")[int(p) - 1]
