"""`guard doctor`: the click command over guard/doctor.py."""
from __future__ import annotations

import json

import click

from guard import __version__


@click.command("doctor")
@click.option("--json", "as_json", is_flag=True, help="The same report as one JSON object.")
@click.pass_context
def doctor(ctx: click.Context, as_json: bool) -> None:
    """Which agents guard finds, how it would meter them, the ledger, the process tree, the
    config in effect, and what is missing (exit 1 when the ledger is unusable)."""
    from guard.doctor import diagnose, render

    state = ctx.find_root().obj
    envr = state.envr
    report = diagnose(envr.env, envr.cwd, envr.home, state.flags, __version__)
    click.echo(json.dumps(report.as_json(), indent=2) if as_json else render(report))
    if not report.ok:
        raise SystemExit(1)
