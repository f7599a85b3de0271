"""Command line: parse, call, map errors to exit codes. No logic of its own."""
from __future__ import annotations

import atexit
import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from guard import __version__
from guard.environment import Environment
from guard.errors import ExitStatus, GuardError, UsageError
from guard.options import VALUE_OPTIONS, flag_values, limit_options

if TYPE_CHECKING:
    from guard.config import Settings
    from guard.ledger import Ledger
    from guard.ledger.records import RunRecord

TOOLS = ("claude", "aider", "codex", "run")
RUN_STATUSES = ("running", "paused", "completed", "halted", "crashed", "refused")
# `guard runs --csv`: the contract's fields, nested objects flattened, raw numbers
RUN_CSV_COLUMNS = (
    "id", "tool", "task", "developer", "team", "machine", "line", "status", "exit_code", "started_at",
    "ended_at", "accuracy", "skipped_records", "usage.input_tokens", "usage.output_tokens",
    "usage.cache_write_tokens", "usage.cache_read_tokens", "usage.cost_usd", "usage.steps",
    "halt.ceiling", "halt.limit", "halt.used", "halt.action", "halt.message",
)


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
            from guard.config import load_settings

            self._settings = load_settings(self.envr.env, self.envr.cwd, self.flags)
        return self._settings

    @property
    def ledger(self) -> Ledger:
        if self._ledger is None:
            ledger = self.unchecked_ledger()
            from guard.ledger import marker

            marker.check(ledger, self.envr.home)   # a ledger that lost its history: exit 125
            atexit.register(marker.record, ledger, self.envr.home)
            mark_crashed(ledger)
            self._ledger = ledger
        return self._ledger

    def unchecked_ledger(self) -> Ledger:
        from guard.ledger import open_ledger

        return open_ledger(self.settings.ledger, self.envr.home, self.settings.offline)

    @property
    def reading_ledger(self) -> Ledger:
        """For commands that only read: a ledger that does not exist yet is read as empty,
        and is not created."""
        if self._ledger is None:
            from guard.ledger import marker, open_ledger_for_reading, sqlite_path

            path = sqlite_path(self.settings.ledger, self.envr.home)
            self._ledger = open_ledger_for_reading(self.settings.ledger, self.envr.home)
            if path is None or path.exists():   # a ledger not written yet has no history to lose
                marker.check(self._ledger, self.envr.home)
            mark_crashed(self._ledger)
        return self._ledger


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

# Commands whose module is imported only when they run: a start must not pay for the others.
LAZY_COMMANDS: dict[str, tuple[str, str]] = {
    "report": ("guard.cli_team", "report_cmd"),
    "reconcile": ("guard.cli_team", "reconcile_cmd"),
    "budget": ("guard.cli_team", "budget_group"),
    "policy": ("guard.cli_team", "policy_group"),
    "wrappers": ("guard.cli_team", "wrappers_group"),
    "doctor": ("guard.doctor_cli", "doctor"),
    "import": ("guard.cli_history", "import_cmd"),
    "prune": ("guard.cli_history", "prune_cmd"),
    "export": ("guard.cli_history", "export_cmd"),
    "dashboard": ("guard.cli_dashboard", "dashboard_cmd"),
}


class GuardGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *LAZY_COMMANDS}, key=_command_order)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.commands:
            return self.commands[name]
        if name not in LAZY_COMMANDS:
            return None
        import importlib

        module, attr = LAZY_COMMANDS[name]
        mod = importlib.import_module(module)
        if module in ("guard.cli_team", "guard.cli_history", "guard.cli_dashboard"):
            # they read settings and the ledger through the team commands' context
            importlib.import_module("guard.cli_team").set_context_provider(_team_context)
        command: click.Command = getattr(mod, attr)
        self.add_command(command, name)
        return command

    def resolve_command(self, ctx: click.Context, args: list[str]) -> Any:
        name = args[0] if args else ""
        if name and self.get_command(ctx, name) is None and not name.startswith("-"):
            raise click.UsageError(not_a_command_hint(name, ctx.obj.tool_args if isinstance(ctx.obj, State)
                                                      else []))
        return super().resolve_command(ctx, args)


def _command_order(name: str) -> tuple[int, str]:
    return (TOOLS.index(name) if name in TOOLS else len(TOOLS), name)


@click.group(cls=GuardGroup, context_settings={"help_option_names": ["-h", "--help"]})
@limit_options
@click.version_option(__version__, prog_name="guard")
@click.pass_context
def cli(ctx: click.Context, **kwargs: Any) -> None:
    """Keep AI coding agents inside a budget.

    \b
      guard [OPTIONS] claude|aider|codex [TOOL ARGS...]
      guard [OPTIONS] run -- CMD [ARGS...]

    guard's options come before the tool name; everything after it reaches the tool verbatim
    (so `guard claude --help` is Claude Code's help). `guard help TOOL` says what guard adds.
    """
    obj = ctx.ensure_object(dict)
    ctx.obj = State(obj.get("envr") or Environment(), flag_values(kwargs), obj.get("tool_args", []))


TOOL_SUMMARIES = {
    "claude": "Run Claude Code under guard's ceilings.",
    "aider": "Run aider under guard's ceilings.",
    "codex": "Run Codex under guard's ceilings.",
    "run": "Run any command under guard's ceilings: guard [OPTIONS] run -- CMD [ARGS...]",
}


def _tool_command(tool: str) -> click.Command:
    @click.command(tool, context_settings={"ignore_unknown_options": True, "help_option_names": []},
                   add_help_option=False, help=TOOL_SUMMARIES[tool], short_help=TOOL_SUMMARIES[tool])
    @click.argument("args", nargs=-1, type=click.UNPROCESSED)
    @pass_state
    def command(state: State, args: tuple[str, ...]) -> None:
        from guard.adapters.passthrough import is_passthrough

        if is_passthrough(tool, state.tool_args):
            _exec_passthrough(state, tool)
        from guard.adapters.registry import load_adapter
        from guard.supervisor.setup import supervisor

        run = supervisor(state.envr, state.settings, state.ledger, load_adapter(tool), tool, state.tool_args,
                         _wrapper_dirs(state))
        from guard import config_drift

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


def _wrapper_dirs(state: State) -> tuple[Path, ...]:
    return tuple(Path(p) for p in state.envr.env.get("GUARD_WRAPPER_DIR", "").split(os.pathsep) if p)


def _exec_passthrough(state: State, tool: str) -> None:
    """Not a session: the tool takes guard's place. Nothing to meter, nothing recorded, and no
    guard left in between to wait for."""
    from guard.adapters.base import find_executable

    name = tool
    if tool == "aider":
        configured = (state.settings.get("aider") or {})
        name = str(configured.get("executable") or configured.get("path") or tool)
    exe = find_executable(name, state.envr.env, _wrapper_dirs(state))
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execve(exe, [exe, *state.tool_args], state.envr.env)
    except OSError as e:
        from guard.errors import AgentNotExecutable

        raise AgentNotExecutable(f"{exe}: {e.strerror}") from None


for _tool in TOOLS:
    cli.add_command(_tool_command(_tool))


TOOL_HELP = {
    "claude": """\
guard claude [CLAUDE ARGS...]: Claude Code under guard's ceilings.

  Metering  the session's transcripts (sub-agents included), an OpenTelemetry receiver on
            127.0.0.1, and with --meter auto (the default) the metering proxy.
  Adds      environment variables and one --settings with guard's hooks and status line
            (your own --settings is merged into it).
  Stop      hooks deny the next tool call; after --grace, SIGINT, SIGTERM, SIGKILL.
            In -p mode SIGINT at once; -p also gets --max-budget-usd / --max-turns.
  Untouched subcommands (claude mcp, claude doctor, ...), --help and --version run as if
            guard were not there, and nothing is recorded.""",
    "aider": """\
guard aider [AIDER ARGS...]: aider under guard's ceilings.

  Metering  an analytics log in the run's folder (AIDER_ANALYTICS_LOG), aider's Tokens/Cost
            lines, and with --meter auto (the default) the metering proxy.
  Steps     one per model call (message_send_starting).
  Stop      SIGINT twice (abort the reply, then end), SIGTERM, SIGKILL.
  Untouched --help, --version, --list-models: run as if guard were not there.""",
    "codex": """\
guard codex [CODEX ARGS...]: Codex under guard's ceilings.

  Metering  Codex's rollout files under CODEX_HOME/sessions (--meter proxy for the wire).
  Stop      SIGINT, SIGTERM, SIGKILL.
  Untouched --help, --version and subcommands such as codex login.""",
    "run": """\
guard [OPTIONS] run -- CMD [ARGS...]: any agent under guard's ceilings.

  Metering  the usage-file protocol: guard sets GUARD_USAGE_FILE and the agent appends one JSON
            object per model call ({"input_tokens": ..., "output_tokens": ..., "model": ...}).
            With --meter proxy, ANTHROPIC_BASE_URL / OPENAI_BASE_URL point at guard's proxy.
  Also set  GUARD_RUN_ID, GUARD_REMAINING_USD / _TOKENS / _STEPS / _SECONDS.
  Steps     one per usage line (or its "steps" field).
  Stop      SIGINT, SIGTERM, SIGKILL to the whole process tree.

  Example:  guard --max-usd 2 --max-steps 40 run -- python3 my_agent.py""",
}


@cli.command("help")
@click.argument("topic", required=False)
@click.pass_context
def help_cmd(ctx: click.Context, topic: str | None) -> None:
    """guard's help, or what guard adds to a tool (guard help claude)."""
    if topic is None:
        click.echo(cli.get_help(ctx.parent or ctx))
        return
    if topic in TOOL_HELP:
        click.echo(TOOL_HELP[topic])
        return
    group = ctx.parent.command if ctx.parent else cli
    assert isinstance(group, click.Group)
    command = group.get_command(ctx, topic)
    if command is None:
        raise UsageError(f"help: no command or tool {topic!r} (tools: {', '.join(TOOLS)})")
    click.echo(command.get_help(click.Context(command, info_name=topic, parent=ctx.parent)))


def _table_or_data(fmt: str | None, records: list[RunRecord]) -> bool:
    """Print `records` as JSON or CSV when asked; True if done."""
    if fmt == "json":
        click.echo(json.dumps([r.as_json() for r in records], indent=2))
    elif fmt == "csv":
        from guard.output import to_csv

        click.echo(to_csv([r.as_json() for r in records], RUN_CSV_COLUMNS), nl=False)
    else:
        return False
    return True


def format_options(f: Any) -> Any:
    f = click.option("--csv", "fmt", flag_value="csv", help="CSV: one row per record, raw numbers.")(f)
    return click.option("--json", "fmt", flag_value="json", help="JSON: raw numbers.")(f)


@cli.command()
@format_options
@click.option("--status", multiple=True, type=click.Choice(RUN_STATUSES),
              help="Only runs with this status (repeatable).")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@pass_state
def runs(state: State, fmt: str | None, status: tuple[str, ...], limit: int) -> None:
    """List runs, newest first."""
    records = state.reading_ledger.list_runs(status=status or None, limit=limit)
    if not _table_or_data(fmt, records):
        _runs_table(records)


def _runs_table(records: list[RunRecord]) -> None:
    from rich.table import Table

    from guard.output import console
    from guard.units import format_tokens, format_usd

    table = Table(box=None)
    for col in ("id", "tool", "task", "status", "cost", "tokens", "steps", "started", "halt"):
        table.add_column(col, justify="right" if col in ("cost", "tokens", "steps") else "left")
    for r in records:
        table.add_row(r.id, r.tool, r.task, r.status, format_usd(r.usage.cost_usd), format_tokens(r.usage.tokens),
                      str(r.usage.steps), time.strftime("%Y-%m-%d %H:%M", time.localtime(r.started_at)),
                      r.halt.ceiling if r.halt else "")
    console().print(table)


@cli.command()
@click.argument("run_id")
@format_options
@pass_state
def show(state: State, run_id: str, fmt: str | None) -> None:
    """Everything about one run: usage, halt, notices, approvals."""
    from guard.units import describe_approval, format_amount, format_tokens, format_usd, plural

    ledger = state.reading_ledger
    run = ledger.get_run(run_id)
    data = run.as_json()
    data["notices"] = [{"key": k, "message": m} for k, m, _ in ledger.notices(run.id)]
    data["approvals"] = [
        {"ceiling": a.ceiling, "amount": a.amount, "approved_by": a.approved_by, "reason": a.reason,
         "run_id": a.run_id} for a in ledger.approvals(run.task)]
    if fmt == "json":
        click.echo(json.dumps(data, indent=2))
        return
    if fmt == "csv":
        from guard.output import to_csv

        click.echo(to_csv([run.as_json()], RUN_CSV_COLUMNS), nl=False)
        return
    for key in ("id", "tool", "task", "developer", "status", "exit_code", "started_at", "ended_at",
                "accuracy", "held_by"):
        click.echo(f"{key:>12}: {data[key]}")
    for kind, limit in run.limits.items():
        where = run.limit_sources.get(kind, "")
        click.echo(f"{'limit':>12}: {kind} {format_amount(kind, limit)}" + (f" (from {where})" if where else ""))
    u = run.usage
    click.echo(f"{'usage':>12}: {format_usd(u.cost_usd)}  in {format_tokens(u.input_tokens)}  "
               f"out {format_tokens(u.output_tokens)}  cache write {format_tokens(u.cache_write_tokens)}  "
               f"cache read {format_tokens(u.cache_read_tokens)}  {plural(u.steps, 'step')}")
    if run.halt:
        click.echo(f"{'halt':>12}: {run.halt.message}")
    for n in data["notices"]:
        click.echo(f"{'notice':>12}: {n['message']}")
    for a in data["approvals"]:
        click.echo(f"{'approval':>12}: {describe_approval(a['ceiling'], a['amount'])}, by {a['approved_by']}")


@cli.command()
@format_options
@pass_state
def status(state: State, fmt: str | None) -> None:
    """What is running or paused now."""
    records = state.reading_ledger.list_runs(status=("running", "paused"))
    if _table_or_data(fmt, records):
        return
    if not records:
        click.echo("nothing running")
    else:
        _runs_table(records)
    unsynced = getattr(state.reading_ledger, "unsynced_events", None)
    if unsynced is not None:
        click.echo(f"ledger {state.reading_ledger.describe()}: {unsynced()} events not yet synced")


@cli.group()
def ledger() -> None:
    """The ledger itself."""


@ledger.command("accept-reset")
@pass_state
def accept_reset(state: State) -> None:
    """Accept the ledger as it is now, after it was emptied, replaced or lost rows."""
    from guard.ledger import marker

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
    from guard.supervisor.ancestry import refuse_inside_run

    refuse_inside_run("guard resume", state.ledger)
    run = state.ledger.get_run(run_id)
    who = _who(state)
    if run.status in ("running", "paused"):
        state.ledger.add_control(run.id, "resume", {"raise": raises, "by": who})
        _poke(run)
        click.echo(f"guard: asked run {run.id} to resume" + (f", raising {_fmt(raises)}" if raises else ""))
        return
    if not raises:
        raise UsageError(f"run {run.id} has ended; give --raise-usd/--raise-tokens/--raise-steps/"
                         "--raise-time to raise its task's ceiling")
    for kind, amount in raises.items():
        state.ledger.add_approval(Approval(run.id, run.task, kind, amount, who, ts=time.time()))
    click.echo(f"guard: raised task {run.task!r}: {_fmt(raises)}; it may run again")


def _fmt(raises: dict[str, float]) -> str:
    from guard.units import describe_raise

    return " and ".join(describe_raise(k, v) for k, v in raises.items())


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
                       policy=policy, policy_source=policy_source, ledger_url=settings.ledger)




def split_argv(argv: list[str]) -> tuple[list[str], list[str]]:
    """guard's options end at the tool name; everything after it reaches the tool verbatim."""
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in TOOLS:
            tail = argv[i + 1:]
            if arg == "run" and tail[:1] == ["--"]:
                tail = tail[1:]
            elif arg == "run" and tail[:1] in (["-h"], ["--help"]):
                return [*argv[:i], "help", "run"], []
            elif arg == "run":
                misplaced_run_option(argv[:i], tail)
            return argv[: i + 1], tail
        if arg in VALUE_OPTIONS:
            i += 2
            continue
        if arg.startswith("-"):
            i += 1
            continue
        break  # another subcommand (runs, show, ...): click parses the rest
    return argv, []


def misplaced_run_option(before: list[str], tail: list[str]) -> None:
    """`guard run --max-usd 1 -- x`: guard's options were put after `run`."""
    if not tail or tail[0] not in VALUE_OPTIONS:
        return
    opts: list[str] = []
    rest = list(tail)
    while rest and rest[0] in VALUE_OPTIONS:
        opts += rest[:2]
        rest = rest[2:]
    if rest[:1] == ["--"]:
        rest = rest[1:]
    right = " ".join(["guard", *before, *opts, "run", "--", *rest])
    raise click.UsageError(f"{tail[0]} is guard's option: it goes before the tool, as in: {right}")


def not_a_command_hint(name: str, tail: list[str]) -> str:
    """`guard --max-usd 1 python3 x.py`: a program where a tool or command was expected."""
    import shlex

    argv = sys.argv[1:]
    if name in argv:
        i = argv.index(name)
        right = shlex.join(["guard", *argv[:i], "run", "--", *argv[i:]])
    else:
        right = f"guard [OPTIONS] run -- {name} ..."
    return (f"no command {name!r}. Tools: {', '.join(TOOLS[:3])}; any other program goes after `run --`, "
            f"as in: {right}")


def main(argv: list[str] | None = None, envr: Environment | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    envr = envr or Environment()
    try:
        if not argv:
            # a bare `guard` is a request for help, not a mistake: exit 0
            click.echo(cli.get_help(click.Context(cli, info_name="guard")))
            raise SystemExit(ExitStatus.OK)
        head, tail = split_argv(argv)
        cli.main(head, prog_name="guard", standalone_mode=False,
                 obj={"envr": envr, "tool_args": tail})
    except click.exceptions.Exit as e:
        raise SystemExit(e.exit_code) from None
    except click.UsageError as e:
        envr.error(_one_line(e))
        raise SystemExit(ExitStatus.USAGE) from None
    except click.Abort:
        raise SystemExit(130) from None
    except GuardError as e:
        envr.error(str(e))
        raise SystemExit(e.exit_status) from None
    except Exception as e:
        # a bug in guard: one line on the terminal (the agent's screen may be under it), the
        # traceback only when asked for
        if envr.env.get("GUARD_DEBUG"):
            import traceback

            traceback.print_exc(file=envr.stderr)
        envr.error(f"internal error: {type(e).__name__}: {e} (GUARD_DEBUG=1 shows the traceback)")
        raise SystemExit(ExitStatus.GUARD_FAILED) from None


def _one_line(e: click.UsageError) -> str:
    message = e.format_message() or str(e)
    return " ".join(message.split())
