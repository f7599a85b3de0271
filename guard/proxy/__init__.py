"""Metering reverse proxy: every model call of the agent goes through guard, which reserves its
worst case against the budget before forwarding it and records its exact usage from the wire.

    proxy = start_proxy(sink, gate, pricer, env)
    launch.env.update(proxy.client_env("claude"))
    ... run the agent ...
    proxy.stop()
"""
from __future__ import annotations

from typing import Any

__all__ = ["BudgetGate", "OpenGate", "RunningProxy", "Verdict", "start_proxy"]

# the server (and its HTTP stack) loads only when a proxy starts: a run without one imports
# guard.proxy.gate, and must not pay for it
_HOMES = {"BudgetGate": "guard.proxy.gate", "OpenGate": "guard.proxy.gate", "Verdict": "guard.proxy.gate",
          "RunningProxy": "guard.proxy.server", "start_proxy": "guard.proxy.server"}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'guard.proxy' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_HOMES[name]), name)
