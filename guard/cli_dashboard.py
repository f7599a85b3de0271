"""`guard dashboard`: parse, start the server, map errors to exit codes. Registered in guard/cli.py."""
from __future__ import annotations

import os
import sys
from typing import Any

import click

from guard.cli_team import PERIODS, _common, _context


@click.command("dashboard")
@click.option("--bind", default="127.0.0.1", show_default=True, metavar="ADDR",
              help="address to listen on; beyond loopback a --token is required")
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True, help="0: any free port")
@click.option("--token", default=None, metavar="TOKEN",
              help="bearer token clients must send (default GUARD_DASHBOARD_TOKEN)")
@click.option("--period", type=click.Choice(PERIODS), default="month", show_default=True)
@click.option("--refresh", type=click.FloatRange(0.2), default=5.0, show_default=True,
              help="seconds between checks for new ledger data")
@_common
@click.pass_context
def dashboard_cmd(ctx: click.Context, bind: str, port: int, token: str | None, period: str,
                  refresh: float) -> None:
    """Serve the team's spend as a web page, with Prometheus metrics at /metrics."""
    from guard.dashboard.data import Range
    from guard.dashboard.server import DashboardServer, Snapshots, check_bind

    token = token or os.environ.get("GUARD_DASHBOARD_TOKEN") or None
    check_bind(bind, token)
    tc = _context(ctx)
    eff = tc.effective()
    policy: Any = eff.budget_policy()
    from guard.ledger import open_ledger

    # a connection of its own: a page load never queues behind the snapshot's long reads
    history_ledger = open_ledger(tc.ledger_url or eff.get("ledger"), tc.home)
    snapshots = Snapshots(history_ledger, Range(period, tz=eff.get("timezone")), policy, refresh)
    snapshots.start()
    try:
        server = DashboardServer((bind, port), tc.ledger(), tc.home, snapshots, token)
    except OSError as e:
        from guard.errors import UsageError

        raise UsageError(f"--bind {bind} --port {port}: {e.strerror or e}") from None
    host, real_port = str(server.server_address[0]), int(server.server_address[1])
    shown = f"[{host}]" if ":" in host else host
    click.echo(f"guard: dashboard on http://{shown}:{real_port}/ over {tc.ledger().describe()}", err=True)
    sys.stderr.flush()
    try:
        server.serve_forever(poll_interval=0.5)
    except KeyboardInterrupt:
        pass
    finally:
        snapshots.stop()
        server.server_close()
        history_ledger.close()


COMMANDS = (dashboard_cmd,)
