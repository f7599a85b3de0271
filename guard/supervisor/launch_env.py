"""What a run hands its agent and its proxy: the remaining budget, and a request's worst case
in the decision core's terms."""
from __future__ import annotations

from typing import Any

from guard.adapters.base import Remaining
from guard.governor.events import RequestCost
from guard.governor.state import RunState
from guard.proxy.wire import Estimate

PER_OUTPUT_PROBE = 100_000   # output tokens priced once to get the per-token rate at this input size


def remaining(state: RunState, now: float) -> Remaining:
    cs = {c.name: c for c in state.ceilings(now)}

    def left(name: str) -> float | None:
        return cs[name].left if name in cs else None

    usd = [c.left for c in cs.values() if c.kind == "usd"]
    tokens, steps, seconds = left("tokens"), left("steps"), left("time")
    return Remaining(min(usd) if usd else None, int(tokens) if tokens is not None else None,
                     int(steps) if steps is not None else None, seconds)


def budget_env(run_id: str, rem: Remaining) -> dict[str, str]:
    env = {"GUARD_RUN_ID": run_id}
    for name, value in (("USD", rem.usd), ("TOKENS", rem.tokens), ("STEPS", rem.steps), ("SECONDS", rem.seconds)):
        if value is not None:
            env[f"GUARD_REMAINING_{name}"] = f"{value:.4f}" if name == "USD" else str(int(value))
    return env


def request_cost(pricer: Any, est: Estimate, step: bool) -> RequestCost:
    """Input at its worst (uncached, cache writes at their surcharge), output at the rate of this
    input's tier (a long-context request prices its output higher too)."""
    base = float(pricer.worst_case(est.model, est.input_tokens, 0))
    per = (float(pricer.worst_case(est.model, est.input_tokens, PER_OUTPUT_PROBE)) - base) / PER_OUTPUT_PROBE
    return RequestCost(est.input_tokens, base * est.cache_write_factor, max(0.0, per), est.max_output_tokens,
                       est.thinking_budget, step)
