"""Team commands: report, reconcile, budget grant/show, policy show, wrappers install.

Registered in guard/cli.py with `cli.add_command(...)`. They get the home directory, merged config
and ledger through `set_context_provider`; until the lead wires that, they read --ledger /
GUARD_LEDGER, GUARD_HOME and --config / GUARD_CONFIG themselves.
"""
from __future__ import annotations

import functools
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import click

from guard import budgets
from guard.errors import ConfigError, GuardError
from guard.ledger import marker, open_ledger
from guard.ledger.periods import PERIODS, format_reset, period_label
from guard.ledger.sql import SqlLedger
from guard.policy import EffectivePolicy, effective_policy, load_policy
from guard.supervisor.ancestry import refuse_inside_run
from guard.units import format_usd

F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class TeamContext:
    home: Path
    config: dict[str, Any]                 # the developer's config (before the policy)
    config_source: str = "config"
    policy: dict[str, Any] | None = None
    policy_source: str = "policy"
    ledger_url: str | None = None
    flags: dict[str, Any] = field(default_factory=dict)
    _ledger: SqlLedger | None = None

    def effective(self) -> EffectivePolicy:
        return effective_policy(self.policy, self.config, policy_source=self.policy_source,
                                config_source=self.config_source, flags=self.flags)

    def ledger(self, read_only: bool = False) -> SqlLedger:
        """`read_only`: a ledger that does not exist yet is read as empty, not created."""
        if self._ledger is None:
            from guard.ledger import open_ledger_for_reading

            url = self.ledger_url or self.effective().get("ledger")
            from guard.ledger import sqlite_path

            path = sqlite_path(url, self.home)
            self._ledger = (open_ledger_for_reading if read_only else open_ledger)(url, self.home)
            if path is None or path.exists():   # a ledger not written yet has no history to lose
                marker.check(self._ledger, self.home)
        return self._ledger


_provider: Callable[[click.Context], TeamContext] | None = None


def set_context_provider(fn: Callable[[click.Context], TeamContext]) -> None:
    """The lead's cli gives these commands its config and ledger this way."""
    global _provider
    _provider = fn


def default_home() -> Path:
    if os.environ.get("GUARD_HOME"):
        return Path(os.environ["GUARD_HOME"]).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "guard"


def _default_context(ledger: str | None, config: str | None) -> TeamContext:
    home = default_home()
    path = config or os.environ.get("GUARD_CONFIG")
    cfg: dict[str, Any] = {}
    source = "config"
    candidate = Path(path).expanduser() if path else Path.home() / ".config" / "guard" / "config.yaml"
    if path or candidate.exists():
        import yaml   # only with a config file: a report without one never loads it

        try:
            cfg = yaml.safe_load(candidate.read_text()) or {}
        except OSError as e:
            raise ConfigError(f"config {candidate}: {e.strerror or e}") from None
        except yaml.YAMLError as e:
            raise ConfigError(f"config {candidate}: not valid YAML: {str(e).splitlines()[0]}") from None
        if not isinstance(cfg, dict):
            raise ConfigError(f"config {candidate}: expected a mapping")
        source = f"config ({candidate.name})"
    policy, policy_source = None, "policy"
    ref = os.environ.get("GUARD_POLICY") or cfg.get("policy")
    if ref:
        policy, policy_source = load_policy(str(ref), home)
    return TeamContext(home=home, config=cfg, config_source=source, policy=policy,
                       policy_source=policy_source,
                       ledger_url=ledger or os.environ.get("GUARD_LEDGER"))


def _context(ctx: click.Context) -> TeamContext:
    p = ctx.params
    if _provider is not None and not p.get("ledger_url") and not p.get("config_path"):
        return _provider(ctx)
    return _default_context(p.get("ledger_url"), p.get("config_path"))


def _common(fn: F) -> F:
    """--ledger / --config for use before the lead's cli provides them; errors -> exit codes."""
    @click.option("--ledger", "ledger_url", default=None, metavar="URL",
                  help="ledger URL (sqlite:PATH or postgresql://...); default from config")
    @click.option("--config", "config_path", default=None, metavar="PATH", help="config YAML")
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        kwargs.pop("ledger_url", None)
        kwargs.pop("config_path", None)
        try:
            return fn(*args, **kwargs)
        except GuardError as e:
            click.echo(f"guard: error: {e}", err=True)
            sys.exit(int(e.exit_status))
    return wrapper  # type: ignore[return-value]


def _dump(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2, default=str))


# --------------------------------------------------------------------------------------------
# guard report


@click.command("report")
@click.option("--period", type=click.Choice(PERIODS), default="month", show_default=True)
@click.option("--ago", type=int, default=0, help="periods back (1 = the previous one)")
@click.option("--since", default=None, metavar="YYYY-MM-DD")
@click.option("--until", default=None, metavar="YYYY-MM-DD", help="inclusive")
@click.option("--by", "group_by", type=click.Choice(["developer", "team", "line", "tool", "task", "model", "day",
                                                     "developer_day", "branch", "commit", "merge"]),
              default="developer", show_default=True)
@click.option("--repo", "repo_dir", default=None, type=click.Path(file_okay=False, path_type=Path),
              help="work tree --by merge reads (default: the current directory)")
@click.option("--html", "html_file", default=None, type=click.Path(dir_okay=False, path_type=Path),
              help="write the dashboard's view as one static HTML file")
@click.option("--developer", default=None)
@click.option("--team", default=None)
@click.option("--tool", default=None)
@click.option("--top", type=int, default=10, show_default=True, help="top-cost runs to list")
@click.option("--json", "as_json", is_flag=True)
@click.option("--csv", "as_csv", is_flag=True)
@_common
@click.pass_context
def report_cmd(ctx: click.Context, period: str, ago: int, since: str | None, until: str | None,
               group_by: str, repo_dir: Path | None, html_file: Path | None, developer: str | None,
               team: str | None, tool: str | None, top: int, as_json: bool, as_csv: bool) -> None:
    """Spend for a period, grouped by developer, team, line, tool, task, model, day, developer_day,
    branch, commit or merged branch."""
    from guard.report import build_report, resolve_range
    from guard.report.outcome_groups import OUTCOME_GROUPS, build_outcome_report
    from guard.report.render import print_report, to_csv, to_json

    tc = _context(ctx)
    tz = tc.effective().get("timezone")
    lo, hi, label = resolve_range(period, time.time(), tz, ago=ago, since=since, until=until)
    if html_file is not None:
        from guard.dashboard.page import write_html

        write_html(html_file, tc.ledger(), tc.home, period=period, ago=ago, since=since, until=until, tz=tz)
        click.echo(f"guard: wrote {html_file}")
        return
    if group_by in OUTCOME_GROUPS:
        rep = build_outcome_report(tc.ledger(read_only=True), lo, hi, group_by=group_by, tz=tz, label=label, top=top,
                                   developer=developer, team=team, tool=tool, repo_dir=repo_dir)
    else:
        rep = build_report(tc.ledger(read_only=True), lo, hi, group_by=group_by, tz=tz, label=label, top=top,
                           developer=developer, team=team, tool=tool)
    if as_json:
        click.echo(to_json(rep))
    elif as_csv:
        click.echo(to_csv(rep), nl=False)
    else:
        print_report(rep)
        if group_by == "merge":
            from guard.report.render import print_rows

            print_rows("merged into the default branch", ("branch", "spend", "commits", "merged"),
                       [[g["key"], f"${g['spend_usd']:.2f}", g["commits"], g["merged_by"] or "no"]
                        for g in rep.groups])


# --------------------------------------------------------------------------------------------
# guard reconcile


@click.command("reconcile")
@click.option("--since", default=None, metavar="YYYY-MM-DD", help="first UTC day (default: 1st of this month)")
@click.option("--until", default=None, metavar="YYYY-MM-DD", help="last UTC day, inclusive (default: today)")
@click.option("--base-url", default=None, help="API base URL (default ANTHROPIC_ADMIN_BASE_URL / ANTHROPIC_BASE_URL)")
@click.option("--tolerance-usd", type=float, default=0.01, show_default=True)
@click.option("--tolerance-pct", type=float, default=2.0, show_default=True)
@click.option("--check", is_flag=True, help="exit 1 when a day does not reconcile")
@click.option("--json", "as_json", is_flag=True)
@click.option("--csv", "as_csv", is_flag=True, help="one row per day and per developer, raw numbers")
@_common
@click.pass_context
def reconcile_cmd(ctx: click.Context, since: str | None, until: str | None, base_url: str | None,
                  tolerance_usd: float, tolerance_pct: float, check: bool, as_json: bool,
                  as_csv: bool) -> None:
    """Compare the ledger with Anthropic's cost report (Admin key in ANTHROPIC_ADMIN_KEY)."""
    from guard.report.reconcile import make_client, reconcile
    from guard.report.render import print_rows

    today = datetime.now(UTC).date()
    try:
        start = date.fromisoformat(since) if since else today.replace(day=1)
        last = date.fromisoformat(until) if until else today
    except ValueError as e:
        raise ConfigError(f"reconcile: {e}") from None
    tc = _context(ctx)
    client = make_client(base_url)
    rec = reconcile(tc.ledger(read_only=True), client, start, last + timedelta(days=1), tol_usd=tolerance_usd,
                    tol_pct=tolerance_pct / 100)
    if as_json:
        _dump(rec.as_json())
    elif as_csv:
        from guard.output import to_csv

        rows = [{"scope": "day", **d} for d in rec.days] + [{"scope": "developer", **d} for d in rec.developers]
        click.echo(to_csv(rows), nl=False)
    else:
        cols = ("ledger", "bill", "diff", "status")

        def fmt(r: dict[str, Any]) -> list[str]:
            diff = r["diff_usd"]
            return [format_usd(r["ledger_usd"]), format_usd(r["bill_usd"]),
                    ("+" if diff >= 0 else "-") + format_usd(abs(diff)), r["status"]]

        print_rows("per UTC day", ("day", *cols), [[d["day"], *fmt(d)] for d in rec.days])
        print_rows("per developer", ("developer", *cols), [[d["developer"], *fmt(d)] for d in rec.developers])
        t = rec.totals
        sign = "+" if t["diff_usd"] >= 0 else "-"
        click.echo(f"total: ledger {format_usd(t['ledger_usd'])}, bill {format_usd(t['bill_usd'])}, "
                   f"diff {sign}{format_usd(abs(t['diff_usd']))} ({t['status']})")
    if check and not rec.ok:
        sys.exit(1)


# --------------------------------------------------------------------------------------------
# guard budget grant|show


@click.group("budget")
def budget_group() -> None:
    """Developer, team and budget-line ceilings."""


def _scope(developer: str | None, team: str | None, line: str | None, task: str | None = None) -> str:
    given = [(k, v) for k, v in (("developer", developer), ("team", team), ("line", line), ("task", task)) if v]
    if len(given) != 1:
        raise ConfigError("name exactly one of --developer, --team, --line" + (", --task" if task is not None else ""))
    return f"{given[0][0]}:{given[0][1]}"


@budget_group.command("grant")
@click.option("--developer", default=None)
@click.option("--team", default=None)
@click.option("--line", default=None)
@click.option("--task", default=None, help="room above the team policy's max_usd for this task's runs")
@click.option("--usd", required=True, help="amount added to the ceiling (e.g. 100 or $100)")
@click.option("--reason", required=True)
@click.option("--period", type=click.Choice(PERIODS), default=None,
              help="only this period's ceiling (default: every period of the scope, current ones)")
@click.option("--by", "granted_by", default=None, help="who grants (default: your identity)")
@_common
@click.pass_context
def budget_grant(ctx: click.Context, developer: str | None, team: str | None, line: str | None,
                 task: str | None, usd: str, reason: str, period: str | None, granted_by: str | None) -> None:
    """Raise a ceiling for the current period (or a task's policy maximum), recorded with who and why."""
    from guard.units import parse_usd

    tc = _context(ctx)
    refuse_inside_run("guard budget grant", tc.ledger())
    scope = _scope(developer, team, line, task or "")
    if task and period:
        raise ConfigError("--period: a task's grant has no period")
    amount = parse_usd(usd, "--usd")
    who = granted_by or budgets.resolve_developer(tc.config)[0]
    budgets.grant(tc.ledger(), scope, amount, who, reason, period)
    click.echo(f"granted {format_usd(amount)} to {scope}" + (f" for this {period}" if period else "")
               + f" (by {who}: {reason})")


@budget_group.command("show")
@click.option("--developer", default=None)
@click.option("--team", default=None)
@click.option("--line", default=None)
@click.option("--json", "as_json", is_flag=True)
@click.option("--csv", "as_csv", is_flag=True, help="one row per ceiling, raw numbers")
@_common
@click.pass_context
def budget_show(ctx: click.Context, developer: str | None, team: str | None, line: str | None,
                as_json: bool, as_csv: bool) -> None:
    """This period's ceilings: limit (with grants), used, in flight, reset time."""
    from guard.report.render import print_rows

    tc = _context(ctx)
    eff = tc.effective()
    policy = eff.budget_policy()
    cfg = eff.as_config()
    ident = budgets.resolve_identity(cfg, line=line, policy=policy)
    if developer:
        ident = budgets.Identity(developer=developer, team=team or ident.team, machine=ident.machine,
                                 line=ident.line)
    elif team:
        ident = budgets.Identity(developer=ident.developer, team=team, machine=ident.machine, line=ident.line)
    now = time.time()
    ceilings = budgets.period_ceilings(tc.ledger(read_only=True), ident, policy, now)
    if as_json:
        _dump({"developer": ident.developer, "team": ident.team, "line": ident.line,
               "timezone": policy.timezone, "ceilings": [c.as_json() for c in ceilings]})
        return
    if as_csv:
        from guard.output import to_csv

        click.echo(to_csv([c.as_json() for c in ceilings]), nl=False)
        return
    if not ceilings:
        click.echo(f"no developer/team/line ceilings configured for {ident.developer}")
        return
    rows = [[c.name, c.scope, period_label(c.period, c.since, c.timezone),
             format_usd(c.used), format_usd(c.reserved),
             format_usd(c.hard_limit) + (f" (+{format_usd(c.granted)} granted)" if c.granted else ""),
             "EXHAUSTED" if c.exhausted else f"{format_usd(c.remaining)} left", format_reset(c.until, now, c.timezone)]
            for c in ceilings]
    print_rows(f"budgets for {ident.developer}", ("ceiling", "scope", "period", "used", "in flight",
                                                  "limit", "state", "resets"), rows)


@budget_group.command("suggest")
@click.option("--by", "by", type=click.Choice(["task", "tool", "developer"]), default="task", show_default=True)
@click.option("--quantile", type=click.FloatRange(0, 1, min_open=True), default=0.9, show_default=True)
@click.option("--headroom", type=click.FloatRange(0, 10), default=0.25, show_default=True,
              help="added on top of the quantile (0.25 = 25%)")
@click.option("--days", type=click.IntRange(1), default=90, show_default=True, help="history to read")
@click.option("--json", "as_json", is_flag=True)
@_common
@click.pass_context
def budget_suggest(ctx: click.Context, by: str, quantile: float, headroom: float, days: int,
                   as_json: bool) -> None:
    """Ceilings from history: the quantile of what runs took, plus headroom, as YAML to paste."""
    from guard.report.suggest import fetch_samples, per_developer_period, per_run, to_yaml

    tc = _context(ctx)
    tz = tc.effective().get("timezone")
    until = time.time()
    since = until - days * 86400
    samples = fetch_samples(tc.ledger(), by, since, until)
    if not samples:
        click.echo(f"# guard budget suggest: no finished runs in the last {days} days to suggest from")
        return
    suggestions = ([per_developer_period(samples, quantile, headroom, tz)] if by == "developer"
                   else per_run(samples, quantile, headroom))
    if as_json:
        _dump({"by": by, "quantile": quantile, "headroom": headroom, "days": days,
               "suggestions": [s.as_dict() for s in suggestions]})
    else:
        click.echo(to_yaml(by, suggestions, quantile, headroom, since, until, tz), nl=False)


# --------------------------------------------------------------------------------------------
# guard policy show


@click.group("policy")
def policy_group() -> None:
    """The team policy and its effect on your config."""


@policy_group.command("show")
@click.option("--json", "as_json", is_flag=True)
@click.option("--csv", "as_csv", is_flag=True, help="key,value,from,note rows; values as JSON")
@_common
@click.pass_context
def policy_show(ctx: click.Context, as_json: bool, as_csv: bool) -> None:
    """The effective policy and where each value came from."""
    from guard.report.render import print_rows

    tc = _context(ctx)
    eff = tc.effective()
    if as_json:
        _dump(eff.as_json())
        return
    if as_csv:
        from guard.output import to_csv

        rows = [{"key": k, "value": json.dumps(v["value"], default=str), "from": v["source"],
                 "note": v.get("note", "")} for k, v in eff.as_json().items()]
        click.echo(to_csv(rows, ("key", "value", "from", "note")), nl=False)
        return
    print_rows("effective policy", ("key", "value", "from", "note"), eff.rows())


# --------------------------------------------------------------------------------------------
# guard wrappers install


@click.group("wrappers")
def wrappers_group() -> None:
    """Drop-in `claude` / `aider` / `codex` that run under guard."""


@wrappers_group.command("install")
@click.argument("directory", required=False, type=click.Path(file_okay=False, path_type=Path))
@click.option("--tool", "tools", multiple=True, help="only these tools (default: claude, aider, codex)")
@click.option("--guard-bin", default=None, help="guard executable the wrappers run (default: this one)")
@click.option("--force", is_flag=True, help="replace files that are not guard wrappers")
def wrappers_install(directory: Path | None, tools: tuple[str, ...], guard_bin: str | None, force: bool) -> None:
    """Write the wrappers into DIRECTORY (default: GUARD_HOME/wrappers); put it first on PATH."""
    from guard.wrappers import TOOLS, install_wrappers

    try:
        target = directory or default_home() / "wrappers"
        written = install_wrappers(target, tools or TOOLS, guard_bin=guard_bin, force=force)
    except GuardError as e:
        click.echo(f"guard: error: {e}", err=True)
        sys.exit(int(e.exit_status))
    for p in written:
        click.echo(f"installed {p}")
    click.echo(f'add it first on PATH:  export PATH="{Path(target).resolve()}:$PATH"')


COMMANDS = (report_cmd, reconcile_cmd, budget_group, policy_group, wrappers_group)
