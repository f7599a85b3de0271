"""What a run takes from the settings beyond its limits: who runs it and how it is metered."""
from __future__ import annotations

from dataclasses import replace

from guard import budgets
from guard.config import Settings
from guard.environment import Environment


def identity_for(settings: Settings, envr: Environment, task: str | None, tool: str) -> budgets.Identity:
    policy = budgets.as_budget_policy(settings) if budgets_enabled(settings) else budgets.BudgetPolicy.from_config({})
    ident = budgets.resolve_identity(
        {"developer": settings.developer, "team": settings.team}, env=envr.env, cwd=envr.cwd,
        line=settings.line, task=task, tool=tool, policy=policy)
    return replace(ident, machine=settings.machine) if settings.machine else ident


# `--meter auto`: the metering proxy where a tool's own figures are known to be partial (Claude
# Code's transcripts miss title calls and cut-off responses; aider estimates and skips commit
# messages, summaries and retries). Native signals are read in every mode.
AUTO_PROXY_TOOLS = ("claude", "aider")


def meter_mode(setting: str, tool: str) -> str:
    if setting == "auto":
        return "proxy" if tool in AUTO_PROXY_TOOLS else "native"
    return setting


def budgets_enabled(settings: Settings) -> bool:
    return bool(settings.budgets or settings.policy or settings.lines)
