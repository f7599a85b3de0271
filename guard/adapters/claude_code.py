"""Claude Code under guard: launch with guard's hooks and status line, meter from the session
transcripts (plus OpenTelemetry where the user does not export it), report its tool calls.

Signals, in the order they usually arrive for one API response:
1. the OTLP `claude_code.api_request` log event (every OTEL_LOGS_EXPORT_INTERVAL),
2. the transcript lines, ~0.1 s after the response ends (one line per content block).
Both key the response `req:<request id>`, so the meter counts it once. The hooks read the state
file the run loop keeps and stop Claude Code gracefully once guard halts the run.
"""
from __future__ import annotations

import json
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from guard.adapters.base import (
    Adapter,
    EventSink,
    Launch,
    LaunchContext,
    find_executable,
)
from guard.adapters.claude_launch import (
    ClaudeArgs,
    config_dir,
    fmt_usd,
    guard_settings,
    load_settings_value,
    looks_like_uuid,
    merge_settings,
    parse_args,
    resume_hint_env,
    telemetry_env,
    user_exports_telemetry,
    user_settings_env,
    user_statusline,
)
from guard.adapters.claude_transcript import (
    History,
    SessionGate,
    ToolCalls,
    TranscriptParser,
    encode_project_dir,
)
from guard.adapters.passthrough import is_passthrough
from guard.usage import UsageEvent


def _figures(ev: UsageEvent) -> tuple[object, ...]:
    return (ev.model, ev.input_tokens, ev.output_tokens, ev.cache_write_tokens, ev.cache_write_1h_tokens,
            ev.cache_read_tokens, ev.steps, ev.cost_usd)

TASK_BUDGET_MIN = 20_000   # the API refuses a smaller output_config.task_budget
MAX_PROJECT_DIR = 200      # longer folder names are cut and hashed by Claude Code


class ClaudeCodeAdapter(Adapter):
    name = "claude"
    executable = "claude"
    # the hooks end Claude Code by itself once the state file says "halt"
    has_graceful_stop = True

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._sink: EventSink | None = None
        self._pending: list[tuple[str, Any]] = []   # what happened before start(sink)
        self._followers: list[Any] = []
        self._otlp: Any = None
        self.args: ClaudeArgs | None = None
        self.session_id: str | None = None
        self.settings_path: Path | None = None
        self.sessions_file: Path | None = None
        self.transcript_root: Path | None = None
        self.passive = False
        self._reported: dict[str, UsageEvent] = {}   # key -> merged view already sent to the sink
        self._report_lock = threading.Lock()
        self._outbox: list[tuple[str, tuple[Any, ...]]] = []  # filled under the lock, sent outside it
        self.parser = TranscriptParser(lambda ev: self._outbox.append(("emit", (ev,))))
        self.gate = SessionGate(self._record)
        self.history = History()
        self.tools = ToolCalls(lambda ev: self._outbox.append(("tool", (ev,))))

    # -- launch ---------------------------------------------------------------------------

    def prepare(self, ctx: LaunchContext) -> Launch:
        exe = find_executable("claude", ctx.env, ctx.wrapper_dirs)
        args = parse_args(ctx.tool_args)
        self.args = args
        env = dict(ctx.env)
        if is_passthrough("claude", ctx.tool_args):
            # not a session (claude mcp ..., claude --version): nothing to meter or stop gracefully
            self.passive = True
            self.has_graceful_stop = False
            return Launch([exe, *ctx.tool_args], env)

        cfg = config_dir(env)
        cwd = ctx.cwd
        user_args = list(ctx.tool_args)
        extra: list[str] = []

        # -- which session files are ours
        if not args.has_session_choice:
            self.session_id = str(uuid.uuid4())
            extra += ["--session-id", self.session_id]
        elif args.session_id and looks_like_uuid(args.session_id):
            self.session_id = args.session_id
        elif args.resume and looks_like_uuid(args.resume) and not args.fork:
            self.session_id = args.resume
        if self.session_id:
            self.gate.claim(self.session_id)   # nothing is held yet: no output
        # other ids (--continue, a resume picker, --fork-session, /clear) arrive via the SessionStart hook
        self.sessions_file = ctx.run_dir / "claude-sessions.jsonl"

        # -- settings: hooks + status line, merged with a --settings the user passed
        flag_settings: dict[str, Any] | None = None
        if args.settings_value is not None:
            try:
                flag_settings = load_settings_value(args.settings_value, cwd)
            except (OSError, ValueError) as e:
                self._later("notice", ("claude-settings",
                            f"could not read your --settings ({e}); guard's hooks replace it for this run"))
        ours = guard_settings(ctx.state_path, self.sessions_file, user_statusline(flag_settings, cfg, cwd))
        merged = merge_settings(flag_settings, ours)
        self.settings_path = ctx.run_dir / "claude-settings.json"
        self.settings_path.write_text(json.dumps(merged, indent=1))
        if args.settings_index is not None:
            # the last --settings wins in Claude Code: put the merged file in its place
            user_args[args.settings_index] = (
                f"--settings={self.settings_path}" if args.settings_inline else str(self.settings_path))
        else:
            extra += ["--settings", str(self.settings_path)]
        env.update(resume_hint_env(env))
        if args.has("--bare", "--safe-mode"):
            self.has_graceful_stop = False
            self._later("notice", ("claude-no-hooks",
                        "--bare/--safe-mode turn hooks off: guard will stop Claude Code by signals only"))
        elif args.print_mode and not ctx.options.get("graceful_print", False):
            # -p: nobody is there to read a stopReason and the loop ends anyway; SIGINT (Claude
            # Code's own interrupt, ~0.1 s) beats waiting for the next tool boundary. The hooks
            # still refuse any tool call that starts before the signal lands.
            self.has_graceful_stop = False
        self.returns_to_prompt = not args.print_mode

        # -- inner fences in -p mode (Claude Code enforces them itself, guard's ceilings stay primary)
        rem = ctx.remaining
        if args.print_mode:
            if rem.usd is not None and not args.has("--max-budget-usd"):
                extra += ["--max-budget-usd", fmt_usd(rem.usd)]
            if rem.steps is not None and not args.has("--max-turns"):
                # one turn more than guard's step ceiling: guard stops first and records why;
                # the fence only matters if guard's own signal is lost
                extra += ["--max-turns", str(max(1, int(rem.steps)) + 1)]
        if ctx.options.get("task_budget") and rem.tokens is not None and not args.has("--task-budget"):
            extra += ["--task-budget", str(max(TASK_BUDGET_MIN, int(rem.tokens)))]

        # -- second signal: OpenTelemetry logs, unless the user exports telemetry themselves
        settings_env = user_settings_env(cfg, cwd, flag_settings)
        if ctx.options.get("otel", True) and not user_exports_telemetry(env, settings_env):
            from guard.adapters.claude_otlp import OtlpReceiver

            self._otlp = OtlpReceiver(self._emit, on_error=lambda m: self._notice("claude-otlp", m))
            self._otlp.bind()
            env.update(telemetry_env(self._otlp.endpoint, int(ctx.options.get("otel_interval_ms", 250))))

        # -- transcripts: only what is written after launch counts (a resumed session appends; a
        # forked one starts its new file with a copy of the old lines, see History)
        from guard.tail import JsonlFollower

        projects = cfg / "projects"
        enc = encode_project_dir(str(cwd))
        self.transcript_root = projects / enc if len(enc) <= MAX_PROJECT_DIR else projects
        # A second of slack for the clock's rounding; no response of this run can be that early.
        self.history = History(since=time.time() - 1.0)
        if args.resume and looks_like_uuid(args.resume):
            self._learn_history(projects, args.resume)
        self._followers = [
            JsonlFollower(self.transcript_root, "*.jsonl", self._on_line, recursive=True, from_start=False),
            JsonlFollower(ctx.run_dir, self.sessions_file.name, self._on_session, from_start=True),
        ]
        return Launch([exe, *extra, *user_args], env)

    # -- watching -------------------------------------------------------------------------

    def start(self, sink: EventSink) -> None:
        with self._lock:
            self._sink = sink
            pending, self._pending = self._pending, []
        for kind, payload in pending:
            getattr(self, f"_{kind}")(*payload)
        if self.passive:
            return
        sink.set_accuracy("exact")
        if self._otlp is not None:
            self._otlp.start()
        for f in self._followers:
            f.start()

    def poll(self) -> None:
        for f in self._followers:
            f.read_now()

    def close(self) -> None:
        # the agent has exited: its last transcript lines and OTLP batch are already written
        for f in self._followers:
            f.stop()
        if self._otlp is not None:
            self._otlp.stop()

    def skipped_records(self) -> int:
        return sum(f.skipped.total for f in self._followers)

    # -- callbacks (watcher threads) --------------------------------------------------------

    def _on_line(self, path: Path, obj: dict[str, Any]) -> None:
        with self._lock:
            self.gate.feed(obj)
            out, self._outbox = self._outbox, []
        self._send(out)

    def _on_session(self, path: Path, obj: dict[str, Any]) -> None:
        sid = obj.get("session_id")
        if isinstance(sid, str) and sid:
            with self._lock:
                self.gate.claim(sid)
                out, self._outbox = self._outbox, []
            self._send(out)

    def _learn_history(self, projects: Path, session_id: str) -> None:
        """The source session's responses, read before launch: a fork copies them."""
        for path in sorted(projects.glob(f"*/{session_id}.jsonl")):
            try:
                with path.open("rb") as f:
                    for line in f:
                        if b'"assistant"' not in line:
                            continue   # only responses carry the ids to skip; a long session reads fast
                        try:
                            obj = json.loads(line)
                        except ValueError:
                            continue   # a torn last line: its response is after the launch anyway
                        if isinstance(obj, dict):
                            self.history.learn(obj)
            except OSError:
                continue

    def _record(self, obj: dict[str, Any]) -> None:
        # called with self._lock held, for records of this run's sessions only
        if not self.history.is_new(obj):
            return
        self.parser.feed(obj)
        self.tools.feed(obj)

    def _sendone(self, ev: UsageEvent) -> None:
        if self._sink is None:
            self._later("sendone", (ev,))
        else:
            self._sink.emit(ev)

    def _later(self, kind: str, payload: tuple[Any, ...]) -> None:
        with self._lock:
            if self._sink is None:
                self._pending.append((kind, payload))
                return
        getattr(self, f"_{kind}")(*payload)

    def _emit(self, ev: UsageEvent) -> None:
        # Two sources report most responses: pass a report on only when it adds something, so the
        # run loop never mistakes a late copy of a known call for new spending.
        with self._report_lock:
            prior = self._reported.get(ev.key)
            merged = prior.merge(ev) if prior is not None else ev
            if prior is not None and _figures(prior) == _figures(merged):
                self._reported[ev.key] = merged   # remember the second source, nothing to send
                return
            self._reported[ev.key] = merged
        if self._sink is None:
            self._later("sendone", (merged,))
        else:
            self._sink.emit(merged)

    def _send(self, out: list[tuple[str, tuple[Any, ...]]]) -> None:
        # the sink is called without our lock held: it may take its own locks
        for kind, payload in out:
            getattr(self, f"_{kind}")(*payload)

    def _notice(self, key: str, message: str) -> None:
        if self._sink is None:
            self._later("notice", (key, message))
        else:
            self._sink.notice(key, message)

    def _tool(self, ev: Any) -> None:
        if self._sink is None:
            self._later("tool", (ev,))
        else:
            self._sink.tool(ev)
