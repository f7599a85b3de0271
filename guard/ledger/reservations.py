"""Admission bounded by in-flight reservations.

A guard about to let spend happen (a new run, or the proxy about to forward a model call) first
reserves its worst case against every scope it charges (`developer:alice`, `team:core`,
`line:shared-infra`). The check "committed spend + live reservations + this one <= limit" and the
insert are one conditional statement per scope (`INSERT ... SELECT ... WHERE committed + held +
usd <= limit`), in one short transaction for all the scopes -- PostgreSQL: with transaction-scoped
advisory locks per scope, taken in a fixed order so two guards never deadlock; SQLite: BEGIN
IMMEDIATE -- so guards on many machines cannot all admit past a ceiling at once, and callers need
no lock of their own around it. Once the call is metered its reservation is
released; a crashed guard's reservations expire (`expires_at`).

Spend per scope: a developer's spend excludes runs charged to a budget line (the line pays
instead); a team's spend includes everything its members ran, lines included.
"""
from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from guard.errors import ConfigError, Refused
from guard.ledger.sql import _USAGE_SUMS, SqlLedger, _totals
from guard.usage import Totals

SCOPE_KINDS = ("developer", "team", "line")
DEFAULT_TTL = 15 * 60.0


class ScopeLimit(Protocol):
    """What `reserve` needs of a ceiling (budgets.Ceiling has these)."""

    scope: str
    limit: float
    since: float
    until: float


def parse_scope(scope: str) -> tuple[str, str]:
    kind, _, name = scope.partition(":")
    if kind not in SCOPE_KINDS or not name:
        raise ConfigError(f"scope {scope!r}: expected developer:NAME, team:NAME or line:NAME")
    return kind, name


def _scope_where(scope: str) -> tuple[str, list[Any]]:
    kind, name = parse_scope(scope)
    if kind == "developer":
        return "r.developer = ? AND r.line IS NULL", [name]
    return f"r.{kind} = ?", [name]


def scope_totals_direct(led: SqlLedger, scope: str, since: float, until: float,
                        exclude_run: str | None = None) -> Totals:
    where, params = _scope_where(scope)
    rows = led._execute(
        f"SELECT {_USAGE_SUMS} FROM events e JOIN runs r ON r.id = e.run_id "
        f"WHERE e.ts >= ? AND e.ts < ? AND r.id <> ? AND {where}",
        [since, until, exclude_run or "", *params])
    return _totals(rows[0])


def scope_totals(ledger: SqlLedger, scope: str, since: float, until: float,
                 exclude_run: str | None = None) -> Totals:
    """Spend charged to `scope` by events in [since, until). On a PostgreSQL ledger that is
    offline, the last-known figure plus this machine's spool (see guard.ledger.postgres)."""
    cached = getattr(ledger, "cached_totals", None)
    if cached is not None:
        from guard.ledger.offline import Query

        return cached(Query("scope", (scope, since, until)), exclude_run)  # type: ignore[no-any-return]
    return scope_totals_direct(ledger, scope, since, until, exclude_run)


def reserved_usd(ledger: SqlLedger, scope: str, now: float | None = None,
                 exclude_run: str | None = None) -> float:
    now = time.time() if now is None else now

    def q(led: SqlLedger) -> float:
        rows = led._execute(
            "SELECT COALESCE(SUM(usd), 0) FROM reservations WHERE scope = ? AND expires_at > ? "
            "AND COALESCE(run_id, '') <> ?", (scope, now, exclude_run or ""))
        return float(rows[0][0])

    return _routed(ledger, q)


def _routed(ledger: SqlLedger, fn: Callable[[SqlLedger], Any], spool_ok: bool = True) -> Any:
    routed = getattr(ledger, "routed", None)
    return routed(fn, spool_ok=spool_ok) if routed is not None else fn(ledger)


def _lock_key(scope: str) -> int:
    # A stable signed 64-bit key: every machine must take the same lock for the same scope.
    return int.from_bytes(hashlib.sha256(scope.encode()).digest()[:8], "big", signed=True)


def lock_scopes(led: SqlLedger, scopes: Sequence[str]) -> None:
    """Inside a transaction: serialize admission per scope until it commits."""
    if led.dialect == "postgresql":
        for key in sorted({_lock_key(s) for s in scopes}):
            led._execute("SELECT pg_advisory_xact_lock(?)", (key,))
    # SQLite: the enclosing BEGIN IMMEDIATE already holds the database's write lock.


def reserve(ledger: SqlLedger, limits: Sequence[ScopeLimit], usd: float, run_id: str | None, *,
            ttl: float = DEFAULT_TTL, now: float | None = None) -> str:
    """Reserve `usd` against every scope in `limits`, or raise Refused naming the first scope
    that would go past its limit. Returns the reservation id for `release`.

    Safe to call from many threads and processes at once with no lock of the caller's: each
    scope's check and insert are one conditional statement in the ledger."""
    if usd < 0:
        raise ValueError("usd must be >= 0")
    now = time.time() if now is None else now

    def attempt(led: SqlLedger) -> str:
        from guard.ledger.offline import Query

        if led is ledger or not hasattr(ledger, "cached_totals"):
            return _reserve(led, limits, usd, run_id, ttl, now, committed=None)
        # offline PostgreSQL: `led` is the local spool; the shared figure is the last-known one
        # plus what this machine spooled since, so it is bound as a value
        def known(lim: ScopeLimit) -> float:
            return float(ledger.offline_totals(  # type: ignore[attr-defined]
                Query("scope", (lim.scope, lim.since, lim.until))).cost_usd)
        return _reserve(led, limits, usd, run_id, ttl, now, committed=known)

    return _routed(ledger, attempt)  # type: ignore[no-any-return]


_HELD = "(SELECT COALESCE(SUM(h.usd), 0) FROM reservations h WHERE h.scope = ? AND h.expires_at > ?)"


def _committed_sql(lim: ScopeLimit) -> tuple[str, list[Any]]:
    where, params = _scope_where(lim.scope)
    return (f"(SELECT COALESCE(SUM(e.cost_usd), 0) FROM events e JOIN runs r ON r.id = e.run_id "
            f"WHERE e.ts >= ? AND e.ts < ? AND {where})", [lim.since, lim.until, *params])


def _reserve(led: SqlLedger, limits: Sequence[ScopeLimit], usd: float, run_id: str | None,
             ttl: float, now: float, committed: Callable[[ScopeLimit], float] | None) -> str:
    """One `INSERT ... SELECT ... WHERE committed + held + usd <= limit` per scope (a scope's
    periods -- day, week, month -- ANDed in it), all in one transaction: a scope that does not fit
    inserts nothing and the whole reservation rolls back. SQLite: BEGIN IMMEDIATE makes the
    statements atomic against other writers. PostgreSQL (read committed): a transaction-scoped
    advisory lock per scope, taken in a fixed order, held on the server for these few statements
    only -- each statement then sees the others' commits."""
    rid = uuid.uuid4().hex
    by_scope: dict[str, list[ScopeLimit]] = {}
    for lim in limits:
        by_scope.setdefault(lim.scope, []).append(lim)
    try:
        with led.transaction():
            lock_scopes(led, list(by_scope))
            for scope, lims in by_scope.items():
                conds: list[str] = []
                params: list[Any] = [rid, scope, usd, run_id, now, now + ttl]
                for lim in lims:
                    spent_sql, spent_params = (_committed_sql(lim) if committed is None
                                               else ("?", [committed(lim)]))
                    conds.append(f"{spent_sql} + {_HELD} + ? <= ?")
                    params += [*spent_params, scope, now, usd, lim.limit + 1e-9]
                inserted = led._execute(
                    "INSERT INTO reservations (id, scope, usd, run_id, created_at, expires_at) "
                    f"SELECT ?, ?, ?, ?, ?, ? WHERE {' AND '.join(conds)} RETURNING id", params)
                if not inserted:
                    raise _DoesNotFit(lims)
            # housekeeping only: every query already ignores expired rows
            led._execute("DELETE FROM reservations WHERE expires_at <= ?", (now,))
    except _DoesNotFit as e:
        raise _refusal(led, e.limits, usd, now, committed) from None
    return rid


class _DoesNotFit(Exception):
    """Rolls back a reservation's rows for the scopes that did fit."""

    def __init__(self, limits: list[ScopeLimit]) -> None:
        super().__init__()
        self.limits = limits


def _refusal(led: SqlLedger, lims: list[ScopeLimit], usd: float, now: float,
             committed: Callable[[ScopeLimit], float] | None) -> Refused:
    held = float(led._execute(
        "SELECT COALESCE(SUM(usd), 0) FROM reservations WHERE scope = ? AND expires_at > ?",
        (lims[0].scope, now))[0][0])
    figures = [(lim, scope_totals_direct(led, lim.scope, lim.since, lim.until).cost_usd
                if committed is None else committed(lim)) for lim in lims]
    # the period that does not fit (others may have spent since the statement: take the worst)
    lim, spent = max(figures, key=lambda f: f[1] + held + usd - f[0].limit)
    name = getattr(lim, "name", "") or lim.scope
    return Refused(f"{name}: ${spent:.2f} spent + ${held:.2f} in flight + ${usd:.2f} would pass "
                   f"the ${lim.limit:.2f} limit of {lim.scope}")


def release(ledger: SqlLedger, reservation_id: str) -> None:
    def q(led: SqlLedger) -> None:
        with led.transaction():
            led._execute("DELETE FROM reservations WHERE id = ?", (reservation_id,))

    _routed(ledger, q)
    spool = getattr(ledger, "spool", None)
    if spool is not None:   # reserved while offline, released after the link came back
        q(spool)


def release_run(ledger: SqlLedger, run_id: str) -> None:
    """Drop whatever a run still holds (at run end, so nothing waits for expiry)."""
    def q(led: SqlLedger) -> None:
        with led.transaction():
            led._execute("DELETE FROM reservations WHERE run_id = ?", (run_id,))

    _routed(ledger, q)
    spool = getattr(ledger, "spool", None)
    if spool is not None:
        q(spool)
