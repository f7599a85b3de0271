"""Developer, team and budget-line ceilings per calendar period.

Who pays (identity, budget line), what each period's ceiling is (policy + grants), how much of it
is used (ledger), and the once-per-period record of soft notices and their delivery. What to do
about them is the decision core's (guard.governor); guard.supervisor.ledger_view reads these
figures for it.
"""
from __future__ import annotations

import fnmatch
import getpass
import json
import logging
import os
import shlex
import socket
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from guard.errors import ConfigError
from guard.ledger.periods import PERIODS, format_reset, period_bounds, period_label
from guard.ledger.reservations import _routed, reserved_usd, scope_totals
from guard.ledger.sql import SqlLedger
from guard.units import parse_usd
from guard.usage import Totals

log = logging.getLogger("guard.budgets")

DEFAULT_SOFT = (0.75,)
DEFAULT_HARD = 1.0

# --------------------------------------------------------------------------------------------
# identity


@dataclass(frozen=True)
class Identity:
    developer: str
    team: str | None = None
    machine: str | None = None
    line: str | None = None
    developer_source: str = "config"


def git_email(cwd: Path | None = None) -> str | None:
    try:
        out = subprocess.run(["git", "config", "user.email"], cwd=cwd, capture_output=True,
                             text=True, timeout=3)
    except (OSError, subprocess.SubprocessError):
        return None
    email = out.stdout.strip()
    return email if out.returncode == 0 and email else None


def resolve_developer(config: Mapping[str, Any], env: Mapping[str, str] | None = None,
                      cwd: Path | None = None) -> tuple[str, str]:
    """(developer, where it came from): config `developer`, GUARD_DEVELOPER, git user.email,
    login name -- first found."""
    env = os.environ if env is None else env
    if config.get("developer"):
        return str(config["developer"]), "config"
    if env.get("GUARD_DEVELOPER"):
        return env["GUARD_DEVELOPER"], "env GUARD_DEVELOPER"
    email = git_email(cwd)
    if email:
        return email, "git user.email"
    try:
        return getpass.getuser(), "login name"
    except (OSError, KeyError):
        return "unknown", "default"


def resolve_identity(config: Mapping[str, Any], *, env: Mapping[str, str] | None = None,
                     cwd: Path | None = None, line: str | None = None, task: str | None = None,
                     tool: str | None = None, policy: BudgetPolicy | None = None) -> Identity:
    env = os.environ if env is None else env
    developer, source = resolve_developer(config, env, cwd)
    team = config.get("team") or env.get("GUARD_TEAM") or None
    policy = policy or BudgetPolicy.from_config(config)
    chosen = select_line(policy, line or env.get("GUARD_LINE") or None, cwd=cwd, task=task, tool=tool)
    return Identity(developer=developer, team=str(team) if team else None,
                    machine=socket.gethostname(), line=chosen, developer_source=source)


# --------------------------------------------------------------------------------------------
# policy (what the ceilings are)


def _period_limits(raw: Any, where: str) -> dict[str, float]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: expected a mapping of day/week/month to USD")
    out: dict[str, float] = {}
    for k, v in raw.items():
        if k == "match":
            continue
        if k not in PERIODS:
            raise ConfigError(f"{where}.{k}: not one of {', '.join(PERIODS)}")
        out[k] = parse_usd(v, f"{where}.{k}")
    return out


@dataclass
class BudgetPolicy:
    timezone: str | None = None
    developer: dict[str, float] = field(default_factory=dict)
    team: dict[str, float] = field(default_factory=dict)
    lines: dict[str, dict[str, float]] = field(default_factory=dict)
    line_rules: list[dict[str, Any]] = field(default_factory=list)
    soft: tuple[float, ...] = DEFAULT_SOFT
    hard: float = DEFAULT_HARD
    notify: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> BudgetPolicy:
        b = cfg.get("budgets") or {}
        if not isinstance(b, Mapping):
            raise ConfigError("budgets: expected a mapping")
        lines_raw = {**(cfg.get("lines") or {}), **(b.get("lines") or {})}
        if not isinstance(lines_raw, Mapping):
            raise ConfigError("budgets.lines: expected a mapping of line name to limits")
        rules = list(b.get("line_rules") or [])
        lines: dict[str, dict[str, float]] = {}
        for name, spec in lines_raw.items():
            lines[str(name)] = _period_limits(spec, f"budgets.lines.{name}")
            if isinstance(spec, Mapping) and isinstance(spec.get("match"), Mapping):
                rules.append({"line": str(name), **spec["match"]})
        for i, r in enumerate(rules):
            if not isinstance(r, Mapping) or not r.get("line"):
                raise ConfigError(f"budgets.line_rules[{i}]: expected {{line: NAME, cwd|task|tool: PATTERN}}")
        soft_raw = b.get("soft", DEFAULT_SOFT)
        soft_list = soft_raw if isinstance(soft_raw, (list, tuple)) else [soft_raw]
        soft = tuple(sorted({_fraction(s, "budgets.soft") for s in soft_list}))
        hard = _fraction(b.get("hard", DEFAULT_HARD), "budgets.hard")
        notify = cfg.get("notify") or {}
        if not isinstance(notify, Mapping):
            raise ConfigError("notify: expected {webhook: URL, command: CMD}")
        return cls(timezone=cfg.get("timezone") or None,
                   developer=_period_limits(b.get("developer"), "budgets.developer"),
                   team=_period_limits(b.get("team"), "budgets.team"),
                   lines=lines, line_rules=[dict(r) for r in rules], soft=soft, hard=hard,
                   notify=dict(notify))


def _fraction(v: Any, where: str) -> float:
    """0.75, "75%" or 75 -> 0.75."""
    try:
        s = str(v).strip()
        x = float(s.rstrip("%")) / (100 if s.endswith("%") or float(s.rstrip("%")) > 2 else 1)
    except ValueError:
        raise ConfigError(f"{where}: {v!r} is not a fraction (try 0.75 or 75%)") from None
    if not 0 < x <= 2:
        raise ConfigError(f"{where}: {v!r} must be between 0 and 200%")
    return x


def select_line(policy: BudgetPolicy, explicit: str | None, *, cwd: Path | None = None,
                task: str | None = None, tool: str | None = None) -> str | None:
    """`--line NAME`, else the first rule whose cwd/task/tool patterns all match."""
    if explicit:
        if explicit not in policy.lines:
            known = ", ".join(sorted(policy.lines)) or "none are configured"
            raise ConfigError(f"--line {explicit}: no such budget line ({known})")
        return explicit
    here = str(Path(cwd or os.getcwd()).resolve())
    for rule in policy.line_rules:
        ok = True
        for key, value in (("cwd", here), ("task", task), ("tool", tool)):
            pat = rule.get(key)
            if pat is None:
                continue
            if key == "cwd":
                pat = str(Path(str(pat)).expanduser())
            if value is None or not fnmatch.fnmatchcase(value, str(pat)):
                ok = False
                break
        if ok:
            line = str(rule["line"])
            if line not in policy.lines:
                raise ConfigError(f"budgets.line_rules: line {line!r} has no limits in budgets.lines")
            return line
    return None


# --------------------------------------------------------------------------------------------
# ceilings


@dataclass
class Ceiling:
    name: str            # developer_usd | team_usd | line_usd (the halt's `ceiling`)
    scope: str           # developer:alice | team:core | line:shared-infra
    period: str          # day | week | month
    limit: float         # including grants
    used: float          # committed spend in the period (plus the run's own, during a run)
    since: float
    until: float         # when it resets
    base_limit: float = 0.0
    granted: float = 0.0
    reserved: float = 0.0  # other guards' in-flight reservations
    soft: tuple[float, ...] = DEFAULT_SOFT
    hard: float = DEFAULT_HARD
    timezone: str | None = None

    @property
    def resets_at(self) -> float:
        return self.until

    @property
    def hard_limit(self) -> float:
        return self.limit * self.hard

    @property
    def committed(self) -> float:
        return self.used + self.reserved

    @property
    def remaining(self) -> float:
        return max(0.0, self.hard_limit - self.committed)

    @property
    def exhausted(self) -> bool:
        return self.committed >= self.hard_limit - 1e-9

    @property
    def label(self) -> str:
        return f"{self.name} ({self.period}, {self.scope})"

    def refusal(self, now: float) -> str:
        return (f"{self.name}: {self.scope.replace(':', ' ')} has used ${self.committed:.2f} of "
                f"${self.hard_limit:.2f} this {self.period} "
                f"({period_label(self.period, self.since, self.timezone)}); resets "
                f"{format_reset(self.until, now, self.timezone)}")

    def as_state(self) -> dict[str, Any]:
        """The state_path / runs --json `ceilings` entry."""
        return {"name": self.name, "scope": self.scope, "period": self.period,
                "limit": round(self.hard_limit, 6), "used": round(self.committed, 6),
                "resets_at": self.until}

    def as_json(self) -> dict[str, Any]:
        return {**self.as_state(), "base_limit": self.base_limit, "granted": self.granted,
                "reserved": round(self.reserved, 6), "since": self.since,
                "period_label": period_label(self.period, self.since, self.timezone)}


_POLICY_CACHE: dict[str, tuple[float, Any]] = {}


def as_budget_policy(policy: Any, home: Path | None = None) -> BudgetPolicy:
    """A BudgetPolicy from a BudgetPolicy, a config mapping, or a guard.config.Settings (whose
    team `policy` file/URL, when set, is merged in: its limits are maxima)."""
    if isinstance(policy, BudgetPolicy):
        return policy
    if isinstance(policy, Mapping):
        cfg: dict[str, Any] = dict(policy)
    else:
        get = policy.get
        cfg = {k: get(k) for k in ("budgets", "lines", "timezone", "notify", "policy")}
        cfg = {k: v for k, v in cfg.items() if v not in (None, {})}
    ref = cfg.pop("policy", None)
    if ref:
        from guard.policy import effective_policy, load_policy

        hit = _POLICY_CACHE.get(str(ref))
        if hit is None or time.monotonic() - hit[0] > 60:
            home = home or (Path(os.environ["GUARD_HOME"]) if os.environ.get("GUARD_HOME") else None)
            hit = (time.monotonic(), load_policy(str(ref), home))
            _POLICY_CACHE[str(ref)] = hit
        team, source = hit[1]
        if "lines" in cfg:   # one spelling for the merge
            cfg.setdefault("budgets", {})
            cfg["budgets"] = {**cfg["budgets"], "lines": {**cfg.pop("lines"), **cfg["budgets"].get("lines", {})}}
        cfg = effective_policy(team, cfg, policy_source=source).as_config()
    return BudgetPolicy.from_config(cfg)


def scopes_for(identity: Any, policy: BudgetPolicy,
               line: str | None = None) -> list[tuple[str, str, dict[str, float]]]:
    """(ceiling name, scope, period limits) that charge a run of `identity`."""
    out: list[tuple[str, str, dict[str, float]]] = []
    line = line or getattr(identity, "line", None)
    if line:
        if line not in policy.lines:
            known = ", ".join(sorted(policy.lines)) or "none are configured"
            raise ConfigError(f"line {line!r}: no such budget line ({known})")
        out.append(("line_usd", f"line:{line}", policy.lines[line]))
    elif policy.developer:
        out.append(("developer_usd", f"developer:{identity.developer}", policy.developer))
    if identity.team and policy.team:
        out.append(("team_usd", f"team:{identity.team}", policy.team))
    return out


def period_ceilings(ledger: SqlLedger, identity: Any, policy: Any, now: float | None = None,
                    *, line: str | None = None, exclude_run: str | None = None, run_usd: float = 0.0,
                    include_reserved: bool = True) -> list[Ceiling]:
    """Every developer/team/line ceiling of the current periods. `used` = spend in the period
    (excluding `exclude_run`) + `run_usd` (the running run's own total); `reserved` = other
    guards' in-flight reservations (not this run's)."""
    now = time.time() if now is None else now
    policy = as_budget_policy(policy)
    out: list[Ceiling] = []
    for name, scope, limits in scopes_for(identity, policy, line):
        for period in PERIODS:
            if period not in limits:
                continue
            since, until = period_bounds(period, now, policy.timezone)
            used = scope_totals(ledger, scope, since, until, exclude_run).cost_usd + run_usd
            granted = grants_total(ledger, scope, period, since, until)
            reserved = reserved_usd(ledger, scope, now, exclude_run) if include_reserved else 0.0
            out.append(Ceiling(name=name, scope=scope, period=period, limit=limits[period] + granted,
                               used=used, since=since, until=until, base_limit=limits[period],
                               granted=granted, reserved=reserved, soft=policy.soft, hard=policy.hard,
                               timezone=policy.timezone))
    return out


# --------------------------------------------------------------------------------------------
# grants


def grant(ledger: SqlLedger, scope: str, usd: float, granted_by: str, reason: str,
          period: str | None = None, now: float | None = None) -> None:
    """Raise `scope`'s ceilings for the periods containing `now` (all its periods, or one)."""
    if period is not None and period not in PERIODS:
        raise ConfigError(f"--period {period}: not one of {', '.join(PERIODS)}")
    if not reason.strip():
        raise ConfigError("a grant needs a --reason")
    now = time.time() if now is None else now

    def q(led: SqlLedger) -> None:
        with led.transaction():
            led._execute("INSERT INTO budget_grants (scope, period, usd, granted_by, reason, ts) "
                         "VALUES (?, ?, ?, ?, ?, ?)", (scope, period, usd, granted_by, reason, now))

    _routed(ledger, q, spool_ok=False)   # a grant must reach the shared ledger


def grants_total(ledger: SqlLedger, scope: str, period: str, since: float, until: float) -> float:
    def q(led: SqlLedger) -> Totals:
        rows = led._execute(
            "SELECT COALESCE(SUM(usd), 0) FROM budget_grants WHERE scope = ? AND ts >= ? AND ts < ? "
            "AND (period IS NULL OR period = ?)", (scope, since, until, period))
        return Totals(cost_usd=float(rows[0][0]))

    cached = getattr(ledger, "cached_totals", None)
    if cached is not None:
        return float(cached(json.dumps(["grants", scope, period, since, until]), q).cost_usd)
    return q(ledger).cost_usd


def list_grants(ledger: SqlLedger, since: float | None = None) -> list[dict[str, Any]]:
    def q(led: SqlLedger) -> list[tuple[Any, ...]]:
        return led._execute("SELECT scope, period, usd, granted_by, reason, ts FROM budget_grants "
                            "WHERE ts >= ? ORDER BY ts", (since or 0.0,))

    rows = _routed(ledger, q)
    return [{"scope": r[0], "period": r[1], "usd": r[2], "granted_by": r[3], "reason": r[4], "ts": r[5]}
            for r in rows]


# --------------------------------------------------------------------------------------------
# soft notices, once per scope, period and threshold (across runs and machines)


def mark_notified(ledger: SqlLedger, scope: str, period: str, period_start: float, threshold: float,
                  message: str) -> bool:
    """True for the first caller only."""
    def q(led: SqlLedger) -> bool:
        with led.transaction():
            rows = led._execute(
                "INSERT INTO budget_notices (scope, period, period_start, threshold, message, ts) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (scope, period, period_start, threshold) "
                "DO NOTHING RETURNING scope", (scope, period, period_start, threshold, message, time.time()))
        return bool(rows)

    return bool(_routed(ledger, q))


def deliver(notify: Mapping[str, Any], payload: dict[str, Any], timeout: float = 3.0) -> None:
    """Webhook and/or command; a failure is logged, never fatal."""
    url = notify.get("webhook")
    if url:
        import urllib.request   # only when there is a webhook: http.client and ssl cost every start

        try:
            req = urllib.request.Request(str(url), data=json.dumps(payload).encode(), method="POST",
                                         headers={"Content-Type": "application/json",
                                                  "User-Agent": "guard"})
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                resp.read(1024)
        except Exception as e:  # noqa: BLE001 -- any failure of a notice is only logged
            log.warning("guard: notify webhook %s failed: %s", url, e)
    cmd = notify.get("command")
    if cmd:
        try:
            argv = shlex.split(cmd) if isinstance(cmd, str) else [str(x) for x in cmd]
            env = {**os.environ, "GUARD_NOTICE": payload.get("message", ""),
                   "GUARD_NOTICE_SCOPE": str(payload.get("scope", "")),
                   "GUARD_NOTICE_THRESHOLD": str(payload.get("threshold", ""))}
            subprocess.run(argv, input=json.dumps(payload), text=True, env=env, timeout=timeout * 3,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        except (OSError, subprocess.SubprocessError, ValueError) as e:
            log.warning("guard: notify command %r failed: %s", cmd, e)
