"""Aider under guard: meter each main-model call from aider's analytics log, cross-checked by its
own usage report on the terminal and in `.aider.chat.history.md`.

Signals, per main-model call n (n counts calls in this run):
1. the analytics log (guard points AIDER_ANALYTICS_LOG at a file of its own, which aider writes
   even with analytics off, and which neither turns analytics on nor touches ~/.aider; or reads
   the user's own log when they keep one): `message_send_starting` = a step, reported at once;
   `message_send` = the call's tokens and aider's cost. Key `aider:call:<n>`.
2. the `Tokens: ... Cost: ...` report aider prints after each reply (terminal tap, `feed_output`)
   and appends to the chat history: used where the analytics log is silent (key
   `aider:reply:<k>`, k counting reports; terminal and history copies of one report share it), and
   to cross-check it.

aider's own figures are estimates in streaming mode (it counts tokens itself) and never include
its weak-model commit messages, chat summaries, keep-alive pings or retries: guard says so once
and records the run's accuracy.
"""
from __future__ import annotations

import glob
import os
import signal
import threading
from pathlib import Path
from typing import Any

from guard.adapters.aider_analytics import AnalyticsTracker
from guard.adapters.aider_output import (
    Marker,
    ReportScanner,
    TerminalDecoder,
    TokenReport,
    format_tokens,
    report_event,
)
from guard.adapters.aider_settings import AiderSettings, arg_value, resolve
from guard.adapters.base import (
    Adapter,
    EventSink,
    Launch,
    LaunchContext,
    find_executable,
)
from guard.adapters.passthrough import is_passthrough
from guard.tail import JsonlFollower
from guard.usage import UsageEvent

ANALYTICS_FILE = "aider-analytics.jsonl"
NOTICE_KEY = "aider:estimates"
IDLE_FLUSH = 1.0     # a report with no Cost part is complete once the terminal is quiet this long

EXACT_HINT = "for exact figures run `guard --meter proxy aider ...`"


class TextTail:
    """Follow one appended text file from an offset (aider appends and closes per write)."""

    def __init__(self, path: Path, from_end: bool = True) -> None:
        self.path = path
        self.inode: int | None = None
        self.offset = 0
        if from_end:
            try:
                st = path.stat()
                self.inode, self.offset = st.st_ino, st.st_size
            except OSError:
                pass
        self._utf8 = TerminalDecoder()

    def read(self) -> str:
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except OSError:
            return ""
        try:
            st = os.fstat(fd)
            if self.inode is not None and (st.st_ino != self.inode or st.st_size < self.offset):
                self.offset = 0   # replaced or truncated: what is there now is new
            self.inode = st.st_ino
            if st.st_size <= self.offset:
                return ""
            os.lseek(fd, self.offset, os.SEEK_SET)
            chunks = []
            while True:
                data = os.read(fd, 1 << 16)
                if not data:
                    break
                self.offset += len(data)
                chunks.append(data)
            return self._utf8.decode(b"".join(chunks))
        finally:
            os.close(fd)


def _proxy_metered(ctx: LaunchContext) -> bool:
    """The metering proxy counts tokens and dollars: then the adapter only counts steps."""
    return ctx.meter == "proxy"


class AiderAdapter(Adapter):
    name = "aider"
    executable = "aider"

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._sink: EventSink | None = None
        self._outbox: list[tuple[str, tuple[Any, ...]]] = []   # filled under the lock, sent outside
        self.settings: AiderSettings | None = None
        self.analytics_path: Path | None = None
        self.own_log = False
        self.proxy = False
        self.passive = False
        self.tracker = AnalyticsTracker()
        self._follower: JsonlFollower | None = None
        self._history: TextTail | None = None
        self._decoder = TerminalDecoder()
        self._scanners = {"terminal": ReportScanner(quoted=False), "history": ReportScanner(quoted=True)}
        self.reports: dict[str, list[TokenReport]] = {"terminal": [], "history": []}
        self.fallback_emitted: set[int] = set()
        self.accuracy: str | None = None
        self.uncounted: list[str] = []
        self.mismatches: list[str] = []
        self._closed = False

    # -- launch ---------------------------------------------------------------------------

    def prepare(self, ctx: LaunchContext) -> Launch:
        exe_opt = ctx.options.get("executable") or ctx.options.get("path")
        exe = find_executable(str(exe_opt) if exe_opt else "aider", ctx.env, ctx.wrapper_dirs)
        env = dict(ctx.env)
        args = list(ctx.tool_args)
        if is_passthrough("aider", args):
            self.passive = True   # not a session: nothing to meter
            return Launch([exe, *args], env)
        home = Path(env["HOME"]) if env.get("HOME") else None
        self.settings = s = resolve(args, env, ctx.cwd, home)
        self.proxy = _proxy_metered(ctx)
        self.tracker = AnalyticsTracker(model=s.model, estimated=s.stream)

        if s.analytics_log is not None:
            # the user keeps a log already: read theirs, from its current end, and leave it be
            self.analytics_path = s.analytics_log
            self.own_log = False
        else:
            self.analytics_path = ctx.run_dir / ANALYTICS_FILE
            self.analytics_path.touch()
            self.own_log = True
            env["AIDER_ANALYTICS_LOG"] = str(self.analytics_path)
        self._follower = JsonlFollower(
            self.analytics_path.parent, glob.escape(self.analytics_path.name), self._on_record,
            from_start=self.own_log,
        )
        self._history = TextTail(s.chat_history, from_end=True)
        return Launch([exe, *args], env)

    # -- watching -------------------------------------------------------------------------

    def start(self, sink: EventSink) -> None:
        self._sink = sink
        if self.passive or self.settings is None:
            return
        s = self.settings
        if not self.proxy:
            if s.stream:
                self._estimated(
                    "aider streams its replies, so the figures guard reads from it are aider's own "
                    "estimates (it counts the tokens itself, and never counts its commit messages, chat "
                    "summaries, cache keep-alive pings, retries or interrupted replies); "
                    f"{EXACT_HINT}, or give aider --no-stream")
            elif s.keepalive_pings > 0:
                self._estimated(
                    "aider's cache keep-alive pings (--cache-keepalive-pings) are calls it never counts; "
                    f"guard's figures miss them: {EXACT_HINT}")
            else:
                self._set_accuracy("exact")
        self._flush_outbox()
        if self._follower is not None and self.analytics_path is not None and self.analytics_path.parent.is_dir():
            # (the user's log in a folder that does not exist: aider cannot write it either, and
            # guard must not create folders of theirs; poll() still looks, in case it appears)
            self._follower.start()

    def feed_output(self, data: bytes) -> None:
        """Every chunk aider writes to the terminal (the run loop's PTY tap)."""
        if self.passive or self._closed:
            return
        with self._lock:
            items = self._scanners["terminal"].feed(self._decoder.decode(data))
        self._handle(items, "terminal")

    def poll(self) -> None:
        if self.passive:
            return
        if self._follower is not None:
            self._follower.poll()
        items_h: list[Any] = []
        items_t: list[Any] = []
        with self._lock:
            if self._history is not None:
                items_h = self._scanners["history"].feed(self._history.read())
            items_h += self._scanners["history"].flush(idle=IDLE_FLUSH)
            items_t = self._scanners["terminal"].flush(idle=IDLE_FLUSH)
        self._handle(items_h, "history")
        self._handle(items_t, "terminal")

    def close(self) -> None:
        if self.passive or self._closed:
            return
        if self._follower is not None:
            self._follower.stop()
        with self._lock:
            items_h: list[Any] = []
            if self._history is not None:
                items_h = self._scanners["history"].feed(self._history.read())
            items_h += self._scanners["history"].flush()
            items_t = self._scanners["terminal"].feed(self._decoder.decode(b"", final=True))
            items_t += self._scanners["terminal"].flush()
        self._handle(items_h, "history", final=True)
        self._handle(items_t, "terminal", final=True)
        with self._lock:
            self._closed = True
            for ev in self.tracker.finish():
                self._emit(ev)
            self._gap_fill()
            if self.tracker.interrupted and not self.proxy:
                self._uncounted(f"{len(self.tracker.interrupted)} interrupted or failed call(s), "
                                "counted from what was known when they started")
        self._flush_outbox()

    def on_halt(self, reason: str) -> None:
        """Nothing to ask aider: it has no hook. The stop sequence interrupts the reply."""

    def stop_sequence(self) -> tuple[tuple[signal.Signals, float], ...]:
        # SIGINT aborts the reply in flight (aider returns to its prompt, or ends a --message run);
        # a second SIGINT within 2 s exits it (soon after the first: given time, aider would read
        # its next queued message and start another call); SIGTERM (no handler: dies at once) and SIGKILL
        # cover a wedged process. At its prompt aider may let the second SIGINT pass: SIGTERM comes
        # 0.4 s after it, so a stop still ends within a second.
        return (
            (signal.SIGINT, 0.25),
            (signal.SIGINT, 0.4),
            (signal.SIGTERM, 1.0),
            (signal.SIGKILL, 0.0),
        )

    def skipped_records(self) -> int:
        return self._follower.skipped.total if self._follower else 0

    # -- the analytics log ----------------------------------------------------------------

    def _on_record(self, path: Path, obj: dict[str, Any]) -> None:
        with self._lock:
            if self._closed:
                return
            for ev in self.tracker.on_record(obj):
                self._emit(ev)
            if obj.get("event") == "message_send":
                self._cross_check()
        self._flush_outbox()

    # -- the usage reports ----------------------------------------------------------------

    def _handle(self, items: list[Any], source: str, final: bool = False) -> None:
        if not items:
            return
        if not final and any(isinstance(i, TokenReport) for i in items) and self._follower is not None:
            # the analytics line of this reply may be written but not yet read: read it first
            # (outside our lock: the follower calls back into _on_record under its own lock)
            self._follower.read_now()
        with self._lock:
            for item in items:
                if isinstance(item, Marker):
                    if item.kind == "commit":
                        self._uncounted("commit messages written by aider's weak model")
                    elif item.kind == "retry":
                        self._uncounted("retried requests")
                    continue
                self.reports[source].append(item)
                k = len(self.reports[source]) - 1
                if self.tracker.live:
                    self._cross_check()
                elif not final:
                    self._fallback(k, item)
        self._flush_outbox()

    def _fallback(self, k: int, rep: TokenReport) -> None:
        """Emit reply k from aider's printed report (the analytics log is silent)."""
        self.fallback_emitted.add(k)
        if self.proxy:
            steps_only = UsageEvent(key=f"aider:reply:{k}", source="aider_output",
                                    steps=1 if self.tracker.calls <= k else 0)
            self._emit(steps_only)
            return
        # the call's start was not seen in any log: its step is counted here
        self._emit(report_event(f"aider:reply:{k}", rep, self.tracker.model,
                                steps=1 if self.tracker.calls <= k else 0))

    def _gap_fill(self) -> None:
        """At the end: replies aider reported on screen or in the history but not in the log."""
        n = max(len(r) for r in self.reports.values())
        for k in range(len(self.tracker.replies), n):
            if k in self.fallback_emitted:
                continue
            rep = (self.reports["terminal"][k] if k < len(self.reports["terminal"])
                   else self.reports["history"][k])
            self._fallback(k, rep)

    def _cross_check(self) -> None:
        """aider's log and its printed report of the same reply must agree (abbreviated)."""
        replies = self.tracker.replies
        for source, reps in self.reports.items():
            for k in range(min(len(reps), len(replies))):
                rep, rec = reps[k], replies[k]
                if (format_tokens(rec.prompt_tokens) != rep.sent_text
                        or format_tokens(rec.completion_tokens) != rep.received_text):
                    note = (f"reply {k + 1}: analytics log {rec.prompt_tokens}/{rec.completion_tokens}, "
                            f"{source} {rep.sent_text}/{rep.received_text}")
                    if note not in self.mismatches:
                        self.mismatches.append(note)
                        self._notice("aider:mismatch", "aider's analytics log and its printed usage "
                                     f"disagree ({note}); guard counts the log's figures")

    # -- accuracy and notices ------------------------------------------------------------

    def _uncounted(self, what: str) -> None:
        if self.proxy or what in self.uncounted:
            return
        self.uncounted.append(what)
        self._estimated(f"aider made calls it never counts ({what}): guard's figures for this run "
                        f"are aider's own and miss them; {EXACT_HINT}")

    def _estimated(self, message: str) -> None:
        self._set_accuracy("estimated")
        self._notice(NOTICE_KEY, message)

    def _set_accuracy(self, accuracy: str) -> None:
        if self.accuracy == accuracy:
            return
        self.accuracy = accuracy
        self._outbox.append(("accuracy", (accuracy,)))

    def _notice(self, key: str, message: str) -> None:
        self._outbox.append(("notice", (key, message)))

    def _emit(self, ev: UsageEvent) -> None:
        if self.proxy:
            # the proxy meters every call by request id, main-model calls as steps: aider's own
            # figures would double them, and its log comes too late for a step ceiling
            return
        self._outbox.append(("emit", (ev,)))

    def _flush_outbox(self) -> None:
        with self._lock:
            if self._sink is None:
                return
            out, self._outbox = self._outbox, []
        for kind, args in out:
            if kind == "emit":
                self._sink.emit(*args)
            elif kind == "notice":
                self._sink.notice(*args)
            elif kind == "accuracy":
                self._sink.set_accuracy(*args)


__all__ = ["AiderAdapter", "arg_value"]
