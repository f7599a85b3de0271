"""What a shared ceiling counts while the shared ledger is unreachable: the facts a ledger keeps
for it (the queries whose last answers are remembered), handed to the decision core's rule
(guard.governor.offline.offline_figure), whose answer `offline_spend` applies.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from guard.errors import LedgerError
from guard.governor.offline import POLICIES, offline_figure
from guard.ledger.sql import SqlLedger
from guard.usage import Totals

# The `offline` setting's names older configs and GUARD_LEDGER_OFFLINE used for the same.
_ALIASES = {"closed": "refuse", "open": "allow"}


class LedgerOffline(LedgerError):
    """A shared figure cannot be given while the ledger is unreachable, under the offline policy."""

    def __init__(self, where: str, reason: str) -> None:
        super().__init__(f"ledger {where} is unreachable and {reason}")
        self.where = where
        self.reason = reason


def policy_named(name: str) -> str:
    policy = _ALIASES.get(name, name)
    if policy not in POLICIES:
        raise LedgerError(f"offline ledger policy {name!r} is not one of {', '.join(POLICIES)}")
    return policy


@dataclass(frozen=True)
class LastKnown:
    """The shared figure last read from the server, and when (wall clock)."""

    totals: Totals
    fetched_at: float

    def age(self, now: float) -> float:
        return max(0.0, now - self.fetched_at)


def offline_spend(policy: str, last_known: LastKnown | None, local: Totals, where: str = "",
                  shared: bool = True, what: str = "") -> Totals:
    """The core's figure (guard.governor.offline) from the facts this ledger holds; LedgerOffline
    when the policy gives none."""
    figure = offline_figure(policy, last_known.totals if last_known else None, local, shared)
    if isinstance(figure, str):
        fail_closed = "" if policy == "refuse" else f"{what}: refusing (fail closed)"
        raise LedgerOffline(where, figure + fail_closed)
    return figure


def minus(a: Totals, b: Totals) -> Totals:
    return Totals(a.input_tokens - b.input_tokens, a.output_tokens - b.output_tokens,
                  a.cache_write_tokens - b.cache_write_tokens, a.cache_read_tokens - b.cache_read_tokens,
                  a.cost_usd - b.cost_usd, a.steps - b.steps, a.calls - b.calls)


# -- the remembered queries ------------------------------------------------------------------------
# A query is named by kind and arguments (JSON), never by the run asking: every run on this machine
# shares one figure, and the asking run's own part is remembered beside it (so a new run during an
# outage finds the figure an earlier run read).

QueryFn = Callable[[SqlLedger, list[Any], "str | None"], Totals]
_KINDS: dict[str, QueryFn] = {}


def query_kind(name: str) -> Callable[[QueryFn], QueryFn]:
    def register(fn: QueryFn) -> QueryFn:
        _KINDS[name] = fn
        return fn
    return register


@dataclass(frozen=True)
class Query:
    kind: str
    args: tuple[Any, ...]
    # A figure spooled events never change (grants: written online only), named by its own key.
    fixed: Callable[[SqlLedger], Totals] | None = None

    @staticmethod
    def opaque(key: str, fn: Callable[[SqlLedger], Totals]) -> Query:
        return Query("opaque", (key,), fn)

    @property
    def key(self) -> str:
        return json.dumps([self.kind, list(self.args)])

    @staticmethod
    def from_key(key: str) -> Query | None:
        """The query a remembered key names; None for one that spooled events do not change."""
        kind, args = json.loads(key)
        return Query(kind, tuple(args)) if kind in _KINDS else None

    @property
    def shared(self) -> bool:
        """A figure of spend against a shared ceiling. Not a task's own figure, nor an opaque one
        (grants): a grant only raises a ceiling, so one never read counts 0, which fails closed."""
        return self.kind not in ("task", "opaque")

    def run(self, led: SqlLedger, exclude_run: str | None) -> Totals:
        if self.fixed is not None:
            return self.fixed(led)
        return _KINDS[self.kind](led, list(self.args), exclude_run)


@query_kind("spend")
def _spend(led: SqlLedger, a: list[Any], exclude_run: str | None) -> Totals:
    since, until, developer, team, line = a
    return SqlLedger.spend(led, since, until, developer=developer, team=team, line=line,
                           exclude_run=exclude_run)


@query_kind("task")
def _task(led: SqlLedger, a: list[Any], exclude_run: str | None) -> Totals:
    return SqlLedger.task_totals(led, a[0], exclude_run)


@query_kind("scope")
def _scope(led: SqlLedger, a: list[Any], exclude_run: str | None) -> Totals:
    from guard.ledger.reservations import scope_totals_direct

    scope, since, until = a
    return scope_totals_direct(led, scope, since, until, exclude_run)
