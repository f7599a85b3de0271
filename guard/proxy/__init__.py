"""Metering reverse proxy: every model call of the agent goes through guard, which reserves its
worst case against the budget before forwarding it and records its exact usage from the wire.

    proxy = start_proxy(sink, gate, pricer, env)
    launch.env.update(proxy.client_env("claude"))
    ... run the agent ...
    proxy.stop()
"""
from guard.proxy.gate import BudgetGate, OpenGate, Verdict
from guard.proxy.server import RunningProxy, start_proxy

__all__ = ["BudgetGate", "OpenGate", "RunningProxy", "Verdict", "start_proxy"]
