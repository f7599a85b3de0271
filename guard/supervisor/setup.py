"""From settings to a ready Supervisor: the policy file and grants read, the plan built (policy
applied), the identity resolved, prices loaded. The one place a run's settings are resolved."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from guard import budgets

if TYPE_CHECKING:   # the plan (and the decision core under it) is imported by the run alone, not
    # by `guard stop` or `guard resume`, which come here only for the identity
    from guard.adapters.base import Adapter
    from guard.config import Settings
    from guard.environment import Environment
    from guard.ledger import Ledger
    from guard.plan import RunPlan


def team_policy(settings: Settings, home: Path) -> tuple[dict[str, Any], str] | None:
    if not settings.policy:
        return None
    from guard.policy import load_policy

    return load_policy(str(settings.policy), home)


def task_grants(ledger: Ledger, task: str | None) -> float:
    """`guard budget grant --task NAME --usd N`: recorded room above the policy's max_usd."""
    if not task:
        return 0.0
    return budgets.grants_total(ledger, f"task:{task}", "task", 0.0, float("inf"))


def identity_for(settings: Settings, envr: Environment, task: str | None, tool: str) -> budgets.Identity:
    enabled = bool(settings.budgets or settings.policy or settings.lines)
    policy = budgets.as_budget_policy(settings) if enabled else budgets.BudgetPolicy.from_config({})
    ident = budgets.resolve_identity(
        {"developer": settings.developer, "team": settings.team}, env=envr.env, cwd=envr.cwd,
        line=settings.line, task=task, tool=tool, policy=policy)
    return replace(ident, machine=settings.machine) if settings.machine else ident


def plan_for(settings: Settings, envr: Environment, ledger: Ledger, tool: str) -> RunPlan:
    from guard.plan import build_plan

    return build_plan(settings, tool, envr.interactive, team_policy(settings, envr.home),
                      task_grants(ledger, settings.task))


def supervisor(envr: Environment, settings: Settings, ledger: Ledger, adapter: Adapter, tool: str,
               tool_args: list[str], wrapper_dirs: tuple[Path, ...] = ()) -> Any:
    from guard.supervisor.run import Supervisor

    plan = plan_for(settings, envr, ledger, tool)
    if hasattr(ledger, "offline_policy"):   # PostgreSQL: what shared ceilings count during an outage
        from guard.plan import stricter_offline

        ledger.offline_policy = stricter_offline(plan, ledger.offline_policy)
    from guard.pricing import Pricer, load_overrides

    overrides = load_overrides(Path(settings.prices).expanduser()) if settings.prices else None
    from guard.price_store import PriceStore

    # what earlier runs looked up today: a start that needs no new price never imports genai-prices
    pricer = Pricer(overrides, plan.unknown_price, PriceStore(envr.home / "cache" / "prices.json"))  # type: ignore[arg-type]
    identity = identity_for(settings, envr, settings.task, tool)
    return Supervisor(envr, plan, ledger, adapter, tool_args, identity, pricer, dict(settings.notify or {}),
                      policy=settings, wrapper_dirs=wrapper_dirs, options=dict(settings.get(tool) or {}))
