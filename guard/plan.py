"""Settings resolved once into the typed plan of a run, with the team policy applied.

A policy maximum clamps config and flags (`--max-usd 5` under a policy's `max_usd: 1` runs at $1
and says so); for keys that are not numbers the stricter value wins. Going above the policy takes
a recorded grant (`guard budget grant --task NAME --usd N --reason ...`). Pure: the policy file
and the grants are read by the caller."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from guard.config import Settings
from guard.errors import ConfigError
from guard.governor.ceilings import TASK_CEILINGS, format_amount
from guard.units import parse_count, parse_duration, parse_usd

LIMIT_KEYS = {"usd": "max_usd", "tokens": "max_tokens", "steps": "max_steps", "time": "max_time"}
_PARSERS = {"usd": parse_usd, "tokens": parse_count, "steps": parse_count, "time": parse_duration}

# stricter first: where config and policy disagree, the first of the two in this order wins
STRICTNESS = {
    "on_limit": ("kill", "stop", "pause"),
    "unknown_price": ("refuse", "max"),
    "offline": ("refuse", "last-known", "allow"),
}

# `--meter auto`: the metering proxy where a tool's own figures are known to be partial (Claude
# Code's transcripts miss title calls and cut-off responses; aider estimates and skips commit
# messages, summaries and retries). Native signals are read in every mode.
AUTO_PROXY_TOOLS = ("claude", "aider")

DEFAULT_MIN_OUTPUT = 4096


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
    on_limit_source: str
    soft_threshold: float
    grace: float
    unknown_price: str
    offline: str
    meter: str                                # proxy | native (auto resolved)
    min_output_tokens: int
    budgets_enabled: bool
    notices: tuple[str, ...] = ()             # one line per clamp
    sources: dict[str, str] = field(default_factory=dict)

    def limit_values(self) -> dict[str, float]:
        return {k: v.value for k, v in self.limits.items()}

    def limit_sources(self) -> dict[str, str]:
        return {k: v.source for k, v in self.limits.items()}


def meter_mode(setting: str, tool: str) -> str:
    if setting == "auto":
        return "proxy" if tool in AUTO_PROXY_TOOLS else "native"
    return setting


def build_plan(settings: Settings, tool: str, interactive: bool,
               policy: tuple[Mapping[str, Any], str] | None = None,
               granted_usd: float = 0.0) -> RunPlan:
    team, label = policy if policy is not None else ({}, "")
    notices: list[str] = []
    limits: dict[str, Limit] = {}
    for kind in TASK_CEILINGS:
        key = LIMIT_KEYS[kind]
        mine = settings.get(key)
        source = settings.source(key)
        cap = _policy_max(team, key, kind, label)
        if cap is not None and kind == "usd" and granted_usd:
            cap, label_k = cap + granted_usd, f"{label} + granted ${granted_usd:,.2f}"
        else:
            label_k = label
        if cap is None:
            if mine is not None:
                limits[kind] = Limit(float(mine), source)
        elif mine is None or float(mine) <= cap:
            limits[kind] = Limit(float(mine), source) if mine is not None else Limit(cap, label_k)
        else:
            limits[kind] = Limit(cap, label_k)
            notices.append(f"{source.split(': ')[0]} {key} {format_amount(kind, float(mine))} is above the "
                           f"{label_k} maximum: using {format_amount(kind, cap)}")
    on_limit, on_limit_source = _stricter(settings, team, label, "on_limit",
                                          "pause" if interactive else "stop", notices)
    unknown, _ = _stricter(settings, team, label, "unknown_price", "max", notices)
    offline, _ = _stricter(settings, team, label, "offline", "last-known", notices)
    floor = settings.get("min_output_tokens") if "min_output_tokens" in settings.values else DEFAULT_MIN_OUTPUT
    return RunPlan(
        tool=tool, task=settings.task, limits=limits, on_limit=on_limit, on_limit_source=on_limit_source,
        soft_threshold=float(settings.soft_threshold), grace=float(settings.grace), unknown_price=unknown,
        offline=offline, meter=meter_mode(settings.meter, tool), min_output_tokens=int(floor),
        budgets_enabled=bool(settings.budgets or settings.policy or settings.lines),
        notices=tuple(notices), sources={k: settings.source(k) for k in settings.values})


def _policy_max(team: Mapping[str, Any], key: str, kind: str, label: str) -> float | None:
    raw = team.get(key, team.get(key.replace("_", "-")))
    if raw is None:
        return None
    return float(_PARSERS[kind](raw, f"{label}: {key}"))


def _stricter(settings: Settings, team: Mapping[str, Any], label: str, key: str, default: str,
              notices: list[str]) -> tuple[str, str]:
    mine = settings.get(key)
    source = settings.source(key) if mine is not None else "default"
    mine = mine if mine is not None else default
    theirs = team.get(key, team.get(key.replace("_", "-")))
    if theirs is None:
        return str(mine), source
    order = STRICTNESS[key]
    if theirs not in order:
        raise ConfigError(f"{label}: {key}: {theirs!r} is not one of {', '.join(order)}")
    if order.index(theirs) < order.index(mine):
        if source != "default":
            notices.append(f"{source.split(': ')[0]} {key} {mine} is looser than the {label}'s {theirs}: using {theirs}")
        return str(theirs), label
    return str(mine), source
