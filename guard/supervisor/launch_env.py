"""What a run hands its agent and its proxy: the remaining budget, and a request's worst case
in the decision core's terms."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from guard.adapters.base import LaunchContext, Remaining
from guard.environment import Environment
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
    """Input at its worst (uncached, cache writes at their surcharge) but the cache reads its
    conversation's previous request left, output at the rate of this input's tier (a
    long-context request prices its output higher too)."""
    def usd(output: int) -> float:
        return float(pricer.worst_case(est.model, est.input_tokens, output, est.cache_write_factor,
                                       est.cache_read_tokens))
    base = usd(0)
    per = (usd(PER_OUTPUT_PROBE) - base) / PER_OUTPUT_PROBE
    return RequestCost(est.input_tokens, base, max(0.0, per), est.max_output_tokens, est.thinking_budget, step)


def context(state: RunState, run_id: str, envr: Environment, run_dir: Path, state_path: Path,
            tool_args: list[str], options: dict[str, Any], wrapper_dirs: tuple[Path, ...], meter: str) -> LaunchContext:
    rem = remaining(state, state.started_at)
    return LaunchContext(run_id=run_id, tool_args=tool_args, env={**envr.env, **budget_env(run_id, rem)},
                         run_dir=run_dir, state_path=state_path, cwd=envr.cwd, started_at=state.started_at,
                         interactive=envr.interactive, remaining=rem, options=options,
                         wrapper_dirs=wrapper_dirs, meter=meter)


def start_metering_proxy(ctx: LaunchContext, tool: str, sink: Any, gate: Any, pricer: Any) -> Any:
    """The proxy in front of the tool, forwarding to wherever the tool itself would have gone
    (aider: after its .env files); the tool's env and args point it at the proxy."""
    from guard.proxy import start_proxy
    from guard.proxy.env import aider_upstream_env

    upstream = aider_upstream_env(ctx.env, ctx.cwd, ctx.tool_args) if tool == "aider" else ctx.env
    proxy = start_proxy(sink, gate, pricer, upstream)
    ctx.env.update(proxy.client_env(tool))
    ctx.tool_args = ctx.tool_args + proxy.client_args(tool, ctx.tool_args)
    return proxy
