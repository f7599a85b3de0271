"""Settings resolved once into the typed plan of a run, with the team policy applied.

A policy maximum clamps config and flags (`--max-usd 5` under a policy's `max_usd: 1` runs at $1
and says so); for keys that are not numbers the stricter value wins (the rules are
guard.policy's, the same `guard policy show` explains). Going above the policy takes a recorded
grant (`guard budget grant --task NAME --usd N --reason ...`). Pure: the policy file and the
grants are read by the caller."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from guard.config import Settings
from guard.governor.ceilings import TASK_CEILINGS, format_amount
from guard.governor.stuck import StuckRule
from guard.policy import STRICTNESS, effective_policy
from guard.units import parse_usd

LIMIT_KEYS = {"usd": "max_usd", "tokens": "max_tokens", "steps": "max_steps", "time": "max_time"}

# `--meter auto`: the metering proxy where a tool's own figures are known to be partial (Claude
# Code's transcripts miss title calls and cut-off responses; aider estimates and skips commit
# messages, summaries and retries). Native signals are read in every mode.
AUTO_PROXY_TOOLS = ("claude", "aider", "codex")


@dataclass(frozen=True)
class Limit:
    value: float
    source: str


@dataclass(frozen=True)
class RunPlan:
    tool: str
    task: str | None                          # a named task spans runs; None: this run alone
    limits: dict[str, Limit]
    on_limit: str
    unknown_price: str
    offline: str
    soft_threshold: float
    grace: float
    meter: str                                # proxy | native (auto resolved)
    min_output_tokens: int                    # the floor below which a request is not sent
    budgets_enabled: bool
    notices: tuple[str, ...] = ()             # one line per clamp
    stuck_loop: StuckRule | None = None       # the tool section's `stuck_loop` (None: off)
    sources: dict[str, str] = field(default_factory=dict)

    def limit_values(self) -> dict[str, float]:
        return {k: v.value for k, v in self.limits.items()}

    def limit_sources(self) -> dict[str, str]:
        return {k: v.source for k, v in self.limits.items()}


def stricter_offline(plan: RunPlan, ledger_policy: str) -> str:
    """The ledger's own `offline` (config, GUARD_LEDGER_OFFLINE) or the plan's, whichever is
    stricter: the plan carries the team policy's maximum, which the ledger was opened without."""
    order = STRICTNESS["offline"]
    return min((plan.offline, ledger_policy), key=lambda p: order.index(p) if p in order else -1)


def meter_mode(setting: str, tool: str) -> str:
    if setting == "auto":
        return "proxy" if tool in AUTO_PROXY_TOOLS else "native"
    return setting


def build_plan(settings: Settings, tool: str, interactive: bool,
               policy: tuple[Mapping[str, Any], str] | None = None, granted_usd: float = 0.0) -> RunPlan:
    team, label = policy if policy is not None else ({}, "policy")
    team = dict(team)
    if granted_usd and team.get("max_usd") is not None:
        team["max_usd"] = parse_usd(team["max_usd"], f"{label}: max_usd") + granted_usd
        label = f"{label} + granted ${granted_usd:,.2f}"
    defaults = {"on_limit": "pause" if interactive else "stop"}
    flags: dict[str, tuple[Any, str]] = {}
    for key in (*LIMIT_KEYS.values(), *STRICTNESS):
        value = settings.get(key)
        if value is not None:
            flags[key] = (value, settings.source(key))
        elif key in defaults:
            flags[key] = (defaults[key], "default")
    eff = effective_policy(team, {}, policy_source=label, flags=flags)
    notices = []
    for key, (asked, source) in flags.items():
        e = eff.entries[key]
        if e.source == label and source != "default":
            shown = format_amount(_kind(key), float(asked)) if key in LIMIT_KEYS.values() else asked
            got = format_amount(_kind(key), float(e.value)) if key in LIMIT_KEYS.values() else e.value
            notices.append(f"{source.split(': ')[0]}: {key} {shown} is beyond the {label}: using {got}")
    limits = {kind: Limit(float(eff.get(key)), eff.entries[key].source)
              for kind, key in LIMIT_KEYS.items() if eff.get(key) is not None}
    return RunPlan(
        tool=tool, task=settings.task, limits=limits, on_limit=str(eff.get("on_limit")),
        unknown_price=str(eff.get("unknown_price")), offline=str(eff.get("offline")),
        soft_threshold=float(settings.soft_threshold), grace=float(settings.grace),
        meter=meter_mode(settings.meter, tool), min_output_tokens=int(settings.min_output_tokens),
        budgets_enabled=bool(settings.budgets or settings.policy or settings.lines),
        notices=tuple(notices), sources={k: settings.source(k) for k in settings.values},
        stuck_loop=StuckRule.from_options(dict(settings.get(tool) or {})))


def _kind(key: str) -> str:
    return next(k for k, v in LIMIT_KEYS.items() if v == key)


assert set(LIMIT_KEYS) == set(TASK_CEILINGS)
