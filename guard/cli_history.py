"""History commands: import, prune, export. Registered in guard/cli.py like the team commands,
and given the same config and ledger through guard.cli_team's context."""
from __future__ import annotations

import json
import os
import sys
import time
from datetime import date, datetime
from pathlib import Path
from typing import Any

import click

from guard.cli_team import _common, _context
from guard.errors import ConfigError

SOURCES = ("claude", "codex", "aider")


def _sources(which: str | None, paths: tuple[Path, ...]) -> list[tuple[Any, list[Path]]]:
    from guard.history import aider, claude, codex

    env, home = os.environ, Path.home()
    picked = [which] if which else list(SOURCES)
    out: list[tuple[Any, list[Path]]] = []
    for name in picked:
        if name == "claude":
            out.append((claude.ClaudeHistory(), list(paths) or claude.default_roots(env, home)))
        elif name == "codex":
            out.append((codex.CodexHistory(), list(paths) or codex.default_roots(env, home)))
        else:
            out.append((aider.AiderHistory(), list(paths) or aider.default_roots(env, Path.cwd())))
    return out


def _summary_lines(result: Any) -> list[str]:
    from guard.units import format_count

    verb = "would add" if result.dry_run else "added"
    lines = []
    for name, s in result.sources.items():
        if not s.files:
            lines.append(f"{name}: no files found")
            continue
        read = f"{s.files_read} of {s.files} files read ({s.bytes_read / 1e6:.1f} MB)"
        lines.append(f"{name}: {read}; {format_count(s.calls)} calls: {s.new} new, {s.grown} grown, "
                     f"{s.live} already metered live, {s.same} already imported; "
                     f"{verb} ${s.usd:.2f} in {len(s.runs)} runs"
                     + (f" ({s.estimated} estimated)" if s.estimated else ""))
    lines.append(f"total: {verb} ${result.usd:.2f}")
    return lines


@click.command("import")
@click.argument("source", required=False, type=click.Choice(SOURCES))
@click.argument("paths", nargs=-1, type=click.Path(exists=True, path_type=Path))
@click.option("--dry-run", is_flag=True, help="show what would be added; write nothing")
@click.option("--watch", is_flag=True, help="keep importing what the sources append (Ctrl-C ends)")
@click.option("--interval", type=float, default=2.0, show_default=True, help="seconds between --watch passes")
@click.option("--json", "as_json", is_flag=True)
@_common
@click.pass_context
def import_cmd(ctx: click.Context, source: str | None, paths: tuple[Path, ...], dry_run: bool, watch: bool,
               interval: float, as_json: bool) -> None:
    """Read usage guard did not supervise: Claude Code transcripts, Codex rollouts, aider logs.

    Without PATHS: ~/.claude/projects and CLAUDE_CONFIG_DIR, ~/.codex/sessions (CODEX_HOME), and
    ./.aider.chat.history.md, AIDER_ANALYTICS_LOG, AIDER_CHAT_HISTORY_FILE.
    """
    from guard import budgets
    from guard.history.importer import import_history
    from guard.history.pricing import BulkPricer
    from guard.pricing import Pricer, load_overrides

    if paths and not source:
        raise ConfigError("guard import: name the source of PATHS (claude, codex or aider)")
    if watch and dry_run:
        raise ConfigError("guard import: --watch and --dry-run do not go together")
    tc = _context(ctx)
    eff = tc.effective()
    cfg = eff.as_config()
    identity = budgets.resolve_identity(cfg, policy=eff.budget_policy())
    prices = cfg.get("prices")
    pricer = BulkPricer(Pricer(load_overrides(Path(prices)) if prices else None,
                               unknown=cfg.get("unknown_price") or "max"))
    ledger = tc.ledger()
    try:
        while True:
            result = import_history(ledger, _sources(source, paths), identity, pricer, dry_run=dry_run)
            if as_json:
                click.echo(json.dumps(result.as_dict()))
            elif not watch or any(s.files_read for s in result.sources.values()):
                for line in _summary_lines(result):
                    click.echo(line)
            if not watch:
                return
            time.sleep(interval)
    except KeyboardInterrupt:
        if not watch:
            raise
        # Ctrl-C ends --watch; a pass it cut short was rolled back whole and is read again next time


def _day_start(text: str, flag: str) -> float:
    try:
        d = date.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"{flag}: {text!r} is not a date (YYYY-MM-DD)") from None
    return datetime(d.year, d.month, d.day).astimezone().timestamp()


@click.command("prune")
@click.option("--before", required=True, metavar="YYYY-MM-DD", help="drop events before this local day")
@click.option("--dry-run", is_flag=True)
@_common
@click.pass_context
def prune_cmd(ctx: click.Context, before: str, dry_run: bool) -> None:
    """Drop raw events before a day; reports keep their figures (the rollups stay)."""
    from guard.history.maintenance import prune
    from guard.ledger import marker

    cutoff = _day_start(before, "--before")
    tc = _context(ctx)
    n = prune(tc.ledger(), cutoff, dry_run=dry_run)
    if n and not dry_run:   # rows dropped on purpose: the marker must not take them for tampering
        marker.accept(tc.ledger(), tc.home)
    click.echo(f"{'would drop' if dry_run else 'dropped'} {n} events before {before}")


@click.command("export")
@click.option("--csv", "as_csv", is_flag=True, help="CSV with a header row")
@click.option("--jsonl", "as_jsonl", is_flag=True, help="one JSON object per line (the default)")
@click.option("--since", default=None, metavar="YYYY-MM-DD")
@click.option("--until", default=None, metavar="YYYY-MM-DD", help="inclusive")
@_common
@click.pass_context
def export_cmd(ctx: click.Context, as_csv: bool, as_jsonl: bool, since: str | None, until: str | None) -> None:
    """Write raw events, with their run's developer, tool and task, to stdout."""
    from guard.history.maintenance import export

    if as_csv and as_jsonl:
        raise ConfigError("guard export: --csv or --jsonl, not both")
    lo = _day_start(since, "--since") if since else None
    hi = _day_start(until, "--until") + 86400 if until else None
    export(_context(ctx).ledger(), sys.stdout, "csv" if as_csv else "jsonl", since=lo, until=hi)


COMMANDS = (import_cmd, prune_cmd, export_cmd)
