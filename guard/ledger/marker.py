"""A marker outside the ledger (GUARD_HOME/ledger.marker, 0600) that notices a ledger which lost
its history: emptied, truncated, replaced by another file, or with rows deleted.

It cannot stop a process with the user's uid from editing the ledger; it makes the edit visible.
The marker keeps, per ledger, the identity stored inside it (ledger_meta) and the highest counts of
runs and events seen. Counts only grow in a ledger guard writes (nothing deletes runs or events), so
a ledger with fewer rows than its marker, or another identity, is refused until a person accepts it
with `guard ledger accept-reset`.
"""
from __future__ import annotations

import json
import os
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from guard.errors import LedgerError
from guard.ledger.sql import SqlLedger

MARKER_NAME = "ledger.marker"
ACCEPT_COMMAND = "guard ledger accept-reset"


class LedgerTampered(LedgerError):
    """The ledger is not the one the marker remembers, or it lost rows."""

    def __init__(self, ledger: str, problem: str) -> None:
        super().__init__(f"ledger {ledger} {problem}; if that is expected, run `{ACCEPT_COMMAND}`")
        self.ledger = ledger
        self.problem = problem


RECENT_RUNS = 2000          # runs remembered one by one (a month of ceilings, for most teams)
RECENT_SECONDS = 35 * 86400


@dataclass(frozen=True)
class Seen:
    identity: str
    runs: int
    events: int
    recent: dict[str, int] = field(default_factory=dict)   # run id -> its events, recent runs only


def compare(remembered: Seen | None, now: Seen) -> str | None:
    """What is wrong with the ledger as seen `now`, or None. Pure: the whole rule.

    Totals alone miss history deleted and then replaced by new rows, so recent runs are
    remembered one by one: each must still be there, with at least as many events."""
    if remembered is None:
        return None
    if remembered.identity != now.identity:
        return "is not the ledger this GUARD_HOME wrote (replaced, emptied or recreated)"
    lost = [f"{what} {before} -> {after}" for what, before, after in (
        ("runs", remembered.runs, now.runs), ("events", remembered.events, now.events)) if after < before]
    gone = [run for run in remembered.recent if run not in now.recent]
    fewer = [run for run, n in remembered.recent.items() if run in now.recent and now.recent[run] < n]
    if gone:
        lost.append(f"run {gone[0]}" + (f" and {len(gone) - 1} more" if len(gone) > 1 else "") + " deleted")
    if fewer:
        lost.append(f"events of run {fewer[0]}" + (f" and {len(fewer) - 1} more" if len(fewer) > 1 else "")
                    + " deleted")
    if lost:
        return f"lost rows ({', '.join(lost)})"
    return None


def merged(remembered: Seen | None, now: Seen) -> Seen:
    """What to remember after `now` passed: never lower than before (concurrent guards race here)."""
    if remembered is None or remembered.identity != now.identity:
        return now
    recent = dict(remembered.recent)
    for run, n in now.recent.items():
        recent[run] = max(n, recent.get(run, 0))
    keep = dict(list(recent.items())[-RECENT_RUNS:]) if len(recent) > RECENT_RUNS else recent
    return Seen(now.identity, max(remembered.runs, now.runs), max(remembered.events, now.events), keep)


# -- I/O -------------------------------------------------------------------------------------------


def observe(ledger: SqlLedger) -> Seen | None:
    """The ledger's identity (created on first use) and row counts; None while it is unreachable."""
    if getattr(ledger, "online", True) is False:
        return None

    def q(led: SqlLedger) -> Seen:
        rows = led._execute("SELECT value FROM ledger_meta WHERE key = 'identity'")
        if not rows:
            with led.transaction():
                led._execute("INSERT INTO ledger_meta (key, value) VALUES ('identity', ?) "
                             "ON CONFLICT (key) DO NOTHING", (uuid.uuid4().hex,))
            rows = led._execute("SELECT value FROM ledger_meta WHERE key = 'identity'")
        runs = int(led._execute("SELECT COUNT(*) FROM runs")[0][0])
        events = int(led._execute("SELECT COUNT(*) FROM events")[0][0])
        # the recent runs first, then their events counted: counting every run's events and
        # keeping the last RECENT_RUNS read all of a large ledger's events at every open
        recent = {str(r[0]): int(r[1]) for r in led._execute(
            "SELECT r.id, (SELECT COUNT(*) FROM events e WHERE e.run_id = r.id) FROM "
            "(SELECT id, started_at FROM runs WHERE started_at >= ? ORDER BY started_at DESC LIMIT ?) r "
            "ORDER BY r.started_at DESC", (time.time() - RECENT_SECONDS, RECENT_RUNS))}
        return Seen(str(rows[0][0]), runs, events, dict(reversed(list(recent.items()))))

    routed = getattr(ledger, "routed", None)
    if routed is None:
        return q(ledger)
    try:
        return routed(q, spool_ok=False)  # type: ignore[no-any-return]
    except LedgerError:
        return None


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        raise LedgerError(f"{path}: unreadable ledger marker ({e}); run `{ACCEPT_COMMAND}`") from None
    return data if isinstance(data, dict) else {}


def _write(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".ledger.marker.")
    try:
        with os.fdopen(fd, "w") as f:   # mkstemp: 0600 already
            json.dump(data, f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _remembered(data: dict[str, Any], name: str) -> Seen | None:
    entry = data.get(name)
    if not isinstance(entry, dict):
        return None
    try:
        recent = {str(k): int(v) for k, v in dict(entry.get("recent") or {}).items()}
        return Seen(str(entry["identity"]), int(entry["runs"]), int(entry["events"]), recent)
    except (KeyError, TypeError, ValueError, AttributeError):
        return None


def _name(ledger: SqlLedger) -> str:
    url = getattr(ledger, "url", None)
    if url:
        from guard.ledger.postgres import safe_url

        return str(safe_url(url))
    return str(getattr(ledger, "path", ledger.describe()))


def check(ledger: SqlLedger, home: Path) -> None:
    """At open: refuse (LedgerTampered, exit 125) a ledger that lost its history; remember it."""
    now = observe(ledger)
    if now is None:
        return
    path = home / MARKER_NAME
    data = _read(path)
    name = _name(ledger)
    before = _remembered(data, name)
    problem = compare(before, now)
    if problem:
        raise LedgerTampered(name, problem)
    _remember(path, data, name, merged(before, now))


def run_intact(ledger: SqlLedger, run_id: str, calls: int) -> str | None:
    """At run end, before the marker is recorded: the run's own events the agent deleted while it
    ran (the meter counted `calls`), or None. The host prints it and records a halt or notice."""
    have = ledger.run_totals(run_id).calls
    if have < calls:
        return f"run {run_id}: {calls - have} of its {calls} events were deleted from the ledger while it ran"
    return None


def record(ledger: SqlLedger, home: Path) -> None:
    """At the end of a command: remember the ledger's counts, unless it lost rows meanwhile (then
    the marker keeps the higher figures, and the next command refuses)."""
    now = observe(ledger)
    if now is None:
        return
    path = home / MARKER_NAME
    data = _read(path)
    name = _name(ledger)
    before = _remembered(data, name)
    if compare(before, now) is None:
        _remember(path, data, name, merged(before, now))


def accept(ledger: SqlLedger, home: Path) -> Seen | None:
    """A person accepts the ledger as it is now (`guard ledger accept-reset`)."""
    now = observe(ledger)
    if now is None:
        raise LedgerError(f"ledger {_name(ledger)} is unreachable: nothing to accept")
    path = home / MARKER_NAME
    try:
        data = _read(path)
    except LedgerError:
        data = {}   # an unreadable marker is replaced
    before = _remembered(data, _name(ledger))
    _remember(path, data, _name(ledger), now)
    return before


def _remember(path: Path, data: dict[str, Any], name: str, seen: Seen) -> None:
    data[name] = {"identity": seen.identity, "runs": seen.runs, "events": seen.events,
                  "recent": seen.recent}
    _write(path, data)
