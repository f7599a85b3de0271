"""Command line: parse, call, map errors to exit codes. No logic of its own."""
from __future__ import annotations

import atexit
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import click

from guard import __version__, config_drift
from guard.config import Settings, load_settings
from guard.environment import Environment
from guard.errors import ExitStatus, GuardError, UsageError
from guard.ledger import Ledger, marker, open_ledger
from guard.ledger.records import RunRecord
from guard.options import VALUE_OPTIONS, flag_values, limit_options
from guard.supervisor.ancestry import refuse_inside_run

TOOLS = ("claude", "aider", "codex", "run")


class State:
    """What every subcommand needs: the environment, settings, and (lazily) the ledger."""

    def __init__(self, envr: Environment, flags: dict[str, Any], tool_args: list[str]) -> None:
        self.envr = envr
        self.flags = flags
        self.tool_args = tool_args
        self._settings: Settings | None = None
        self._ledger: Ledger | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(self.envr.env, self.envr.cwd, self.flags)
        return self._settings

    @property
    def ledger(self) -> Ledger:
        if self._ledger is None:
            ledger = self.unchecked_ledger()
            marker.check(ledger, self.envr.home)   # a ledger that lost its history: exit 125
            atexit.register(marker.record, ledger, self.envr.home)
            mark_crashed(ledger)
            self._ledger = ledger
        return self._ledger

    def unchecked_ledger(self) -> Ledger:
        return open_ledger(self.settings.ledger, self.envr.home, self.settings.offline)


def mark_crashed(ledger: Ledger) -> None:
    """A run whose guard is gone (killed, machine rebooted) is `crashed`, with what it recorded."""
    for run in ledger.list_runs(status=("running", "paused")):
        if run.machine and run.machine != _hostname():
            continue
        if run.guard_pid and _alive_since(run.guard_pid, run.started_at):
            continue
        ledger.update_run(run.id, status="crashed", ended_at=time.time())


def _hostname() -> str:
    import socket

    return socket.gethostname()


def _alive_since(pid: int, started_at: float) -> bool:
    import psutil

    try:
        p = psutil.Process(pid)
        return p.status() != psutil.STATUS_ZOMBIE and p.create_time() <= started_at + 1
    except psutil.Error:
        return False


pass_state = click.make_pass_decorator(State)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@limit_options
@click.version_option(__version__, prog_name="guard")
@click.pass_context
def cli(ctx: click.Context, **kwargs: Any) -> None:
    """Keep AI coding agents inside a budget.

    \b
      guard [OPTIONS] claude|aider|codex [TOOL ARGS...]
      guard [OPTIONS] run -- CMD [ARGS...]
    """
    obj = ctx.ensure_object(dict)
    ctx.obj = State(obj.get("envr") or Environment(), flag_values(kwargs), obj.get("tool_args", []))


def _tool_command(tool: str) -> click.Command:
    @click.command(tool, context_settings={"ignore_unknown_options": True, "help_option_names": []},
                   add_help_option=False, help=f"Run {tool} under guard's ceilings.")
    @click.argument("args", nargs=-1, type=click.UNPROCESSED)
    @pass_state
    def command(state: State, args: tuple[str, ...]) -> None:
        from guard.adapters.registry import load_adapter
        from guard.supervisor.setup import supervisor

        wrapper_dirs = tuple(Path(p) for p in state.envr.env.get("GUARD_WRAPPER_DIR", "").split(os.pathsep) if p)
        run = supervisor(state.envr, state.settings, state.ledger, load_adapter(tool), tool, state.tool_args,
                         wrapper_dirs)
        configs = config_drift.config_paths(state.envr.env, state.envr.cwd)
        at_start = config_drift.fingerprint(configs)
        note = config_drift.start_note(state.envr.home, at_start)
        if note:
            click.echo(f"guard: warning: {note}", err=True)
        try:
            code = run.execute()
        finally:
            config_drift.record_run_end(state.envr.home, run.run_id, at_start, config_drift.fingerprint(configs))
        raise SystemExit(code)

    return command


for _tool in TOOLS:
    cli.add_command(_tool_command(_tool))


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON object per run, newest first.")
@click.option("--status", multiple=True, help="Only runs with this status (repeatable).")
@click.option("--limit", type=int, default=50, show_default=True)
@pass_state
def runs(state: State, as_json: bool, status: tuple[str, ...], limit: int) -> None:
    """List runs."""
    records = state.ledger.list_runs(status=status or None, limit=limit)
    if as_json:
        click.echo(json.dumps([r.as_json() for r in records], indent=2))
        return
    _runs_table(records)


def _runs_table(records: list[RunRecord]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(box=None)
    for col in ("id", "tool", "task", "status", "cost", "tokens", "steps", "started", "halt"):
        table.add_column(col, justify="right" if col in ("cost", "tokens", "steps") else "left")
    for r in records:
        table.add_row(r.id, r.tool, r.task, r.status, f"${r.usage.cost_usd:.4f}", str(r.usage.tokens),
                      str(r.usage.steps), time.strftime("%Y-%m-%d %H:%M", time.localtime(r.started_at)),
                      r.halt.ceiling if r.halt else "")
    Console().print(table)


@cli.command()
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True)
@pass_state
def show(state: State, run_id: str, as_json: bool) -> None:
    """Everything about one run: usage, halt, notices, approvals."""
    run = state.ledger.get_run(run_id)
    data = run.as_json()
    data["notices"] = [{"key": k, "message": m} for k, m, _ in state.ledger.notices(run.id)]
    data["approvals"] = [
        {"ceiling": a.ceiling, "amount": a.amount, "approved_by": a.approved_by, "reason": a.reason,
         "run_id": a.run_id} for a in state.ledger.approvals(run.task)]
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    for key in ("id", "tool", "task", "developer", "status", "exit_code", "started_at", "ended_at",
                "accuracy"):
        click.echo(f"{key:>12}: {data[key]}")
    u = run.usage
    click.echo(f"{'usage':>12}: ${u.cost_usd:.4f}  in {u.input_tokens}  out {u.output_tokens}  "
               f"cache write {u.cache_write_tokens}  cache read {u.cache_read_tokens}  steps {u.steps}")
    if run.halt:
        click.echo(f"{'halt':>12}: {run.halt.message}")
    for n in data["notices"]:
        click.echo(f"{'notice':>12}: {n['message']}")
    for a in data["approvals"]:
        amount = "continue" if a["amount"] is None else a["amount"]
        click.echo(f"{'approval':>12}: {a['ceiling']} +{amount} by {a['approved_by']}")


@cli.command()
@click.option("--json", "as_json", is_flag=True)
@pass_state
def status(state: State, as_json: bool) -> None:
    """What is running or paused now."""
    records = state.ledger.list_runs(status=("running", "paused"))
    if as_json:
        click.echo(json.dumps([r.as_json() for r in records], indent=2))
    elif not records:
        click.echo("nothing running")
    else:
        _runs_table(records)
    unsynced = getattr(state.ledger, "unsynced_events", None)
    if unsynced is not None and not as_json:
        click.echo(f"ledger {state.ledger.describe()}: {unsynced()} events not yet synced")


@cli.group()
def ledger() -> None:
    """The ledger itself."""


@ledger.command("accept-reset")
@pass_state
def accept_reset(state: State) -> None:
    """Accept the ledger as it is now, after it was emptied, replaced or lost rows."""
    led = state.unchecked_ledger()
    before = marker.accept(led, state.envr.home)
    seen = marker.observe(led)
    was = f" (was {before.runs} runs, {before.events} events)" if before else ""
    click.echo(f"guard: accepted ledger {led.describe()}: {seen.runs if seen else 0} runs, "
               f"{seen.events if seen else 0} events{was}")


@cli.command()
@click.argument("run_id")
@pass_state
def stop(state: State, run_id: str) -> None:
    """Stop a running or paused run."""
    run = state.ledger.get_run(run_id)
    if run.status not in ("running", "paused"):
        raise UsageError(f"run {run.id} is {run.status}, not running")
    state.ledger.add_control(run.id, "stop", {"by": _who(state)})
    _poke(run)
    click.echo(f"guard: asked run {run.id} to stop")


@cli.command()
@click.argument("run_id")
@click.option("--raise-usd", type=str, default=None, help="Raise the task's USD ceiling by this much.")
@click.option("--raise-tokens", type=str, default=None)
@click.option("--raise-steps", type=str, default=None)
@click.option("--raise-time", type=str, default=None)
@pass_state
def resume(state: State, run_id: str, raise_usd: str | None, raise_tokens: str | None,
           raise_steps: str | None, raise_time: str | None) -> None:
    """Resume a paused run (raising a ceiling), or raise the ceiling of a halted task."""
    from guard.ledger.records import Approval
    from guard.units import parse_count, parse_duration, parse_usd

    raises: dict[str, float] = {}
    if raise_usd is not None:
        raises["usd"] = parse_usd(raise_usd, "--raise-usd")
    if raise_tokens is not None:
        raises["tokens"] = parse_count(raise_tokens, "--raise-tokens")
    if raise_steps is not None:
        raises["steps"] = parse_count(raise_steps, "--raise-steps")
    if raise_time is not None:
        raises["time"] = parse_duration(raise_time, "--raise-time")
    refuse_inside_run("guard resume", state.ledger)
    run = state.ledger.get_run(run_id)
    who = _who(state)
    if run.status in ("running", "paused"):
        state.ledger.add_control(run.id, "resume", {"raise": raises, "by": who})
        _poke(run)
        click.echo(f"guard: asked run {run.id} to resume" + (f" with {_fmt(raises)}" if raises else ""))
        return
    if not raises:
        raise UsageError(f"run {run.id} has ended; give --raise-usd/--raise-tokens/--raise-steps/"
                         "--raise-time to raise its task's ceiling")
    for kind, amount in raises.items():
        state.ledger.add_approval(Approval(run.id, run.task, kind, amount, who, ts=time.time()))
    click.echo(f"guard: raised task {run.task!r} by {_fmt(raises)}; it may run again")


def _fmt(raises: dict[str, float]) -> str:
    from guard.governor.ceilings import format_amount

    return ", ".join(f"{k} +{format_amount(k, v)}" for k, v in raises.items())


def _who(state: State) -> str:
    from guard.supervisor.setup import identity_for

    return f"{identity_for(state.settings, state.envr, None, 'cli').developer} (cli)"


def _poke(run: RunRecord) -> None:
    """Wake the supervising guard at once; it also polls, so a missed signal only delays."""
    import signal

    if run.guard_pid:
        try:
            os.kill(run.guard_pid, signal.SIGUSR1)
        except OSError:
            pass


def _team_context(ctx: click.Context) -> Any:
    """The team commands see the same settings and ledger as every other command."""
    from guard.cli_team import TeamContext
    from guard.policy import load_policy

    state = ctx.find_object(State) or State(Environment(), {}, [])
    settings = state.settings
    policy, policy_source = (load_policy(settings.policy, state.envr.home) if settings.policy
                             else (None, "policy"))
    config = {k: v for k, v in settings.values.items() if k != "policy"}
    files = ", ".join(p.name for p in settings.files)
    return TeamContext(home=state.envr.home, config=config,
                       config_source=f"config ({files})" if files else "config",
                       policy=policy, policy_source=policy_source, ledger_url=settings.ledger,
                       _ledger=state.ledger)


def _register_team_commands() -> None:
    from guard import cli_team

    cli_team.set_context_provider(_team_context)
    for command in cli_team.COMMANDS:
        cli.add_command(command)


_register_team_commands()


def _register_dashboard_commands() -> None:
    from guard import cli_dashboard

    for command in cli_dashboard.COMMANDS:
        cli.add_command(command)


_register_dashboard_commands()


def split_argv(argv: list[str]) -> tuple[list[str], list[str]]:
    """guard's options end at the tool name; everything after it reaches the tool verbatim."""
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in TOOLS:
            tail = argv[i + 1:]
            if arg == "run" and tail[:1] == ["--"]:
                tail = tail[1:]
            return argv[: i + 1], tail
        if arg in VALUE_OPTIONS:
            i += 2
            continue
        if arg.startswith("-"):
            i += 1
            continue
        break  # another subcommand (runs, show, ...): click parses the rest
    return argv, []


def main(argv: list[str] | None = None, envr: Environment | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    head, tail = split_argv(argv)
    envr = envr or Environment()
    try:
        cli.main(head, prog_name="guard", standalone_mode=False,
                 obj={"envr": envr, "tool_args": tail})
    except click.exceptions.Exit as e:
        raise SystemExit(e.exit_code) from None
    except click.UsageError as e:
        envr.error(e.format_message().splitlines()[0] if e.format_message() else str(e))
        raise SystemExit(ExitStatus.USAGE) from None
    except click.Abort:
        raise SystemExit(130) from None
    except GuardError as e:
        envr.error(str(e))
        raise SystemExit(e.exit_status) from None
