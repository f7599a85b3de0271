"""aider as history: its analytics logs (`--analytics-log`, JSON lines) and chat histories
(`.aider.chat.history.md`).

The analytics log is parsed by the live adapter's AnalyticsTracker and the chat history by its
ReportScanner; both figures are aider's own estimates, and are recorded as such. One imported run
per aider launch: a `launched` event in a log, an `# aider chat started at` line in a history. A
launch's call counter is carried in the import cursor, so calls appended later keep their keys.
Give a session one of the two files, not both: they describe the same calls under no shared id.
"""
from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from guard.adapters.aider_analytics import AnalyticsTracker
from guard.adapters.aider_output import ReportScanner, TokenReport, report_event
from guard.history.cursor import Cursor, ReadJob, read_each
from guard.history.found import RUN_PREFIX, Found, loads

NAME = "aider"
HISTORY_NAME = ".aider.chat.history.md"
_STARTED = re.compile(r"^# aider chat started at (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)")
_MAIN_MODEL = re.compile(r"^> Main model: (\S+)")
# what a folder is searched for: aider's default history name, and logs named as the docs name them
_DIR_PATTERNS = ("*chat*history*.md", "*analytics*.jsonl")


def default_roots(env: Mapping[str, str], cwd: Path) -> list[Path]:
    roots = [cwd / HISTORY_NAME]
    if env.get("AIDER_ANALYTICS_LOG"):
        roots.append(Path(env["AIDER_ANALYTICS_LOG"]).expanduser())
    if env.get("AIDER_CHAT_HISTORY_FILE"):
        roots.append(Path(env["AIDER_CHAT_HISTORY_FILE"]).expanduser())
    return roots


def _file_id(path: Path) -> str:
    return hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:10]


class _LaunchTracker(AnalyticsTracker):
    """Keys that name the launch, so calls of different launches never collide."""

    def __init__(self, launch: str) -> None:
        super().__init__(model=None, estimated=True)
        self.launch = launch

    def key(self, call: int) -> str:
        return f"aider:{self.launch}:call:{call}"


class AiderHistory:
    name = NAME

    def __init__(self) -> None:
        self._found: list[Found] = []
        self.bad_lines = 0

    def files(self, paths: list[Path]) -> list[Path]:
        out: set[Path] = set()
        for p in paths:
            if p.is_file():
                out.add(p)
            elif p.is_dir():
                out.update(f for pattern in _DIR_PATTERNS for f in p.rglob(pattern))
        return sorted(out)

    def read_all(self, jobs: list[ReadJob], meanwhile: Callable[[], None]) -> list[Cursor]:
        meanwhile()
        return read_each(jobs, NAME, self.feed)

    def feed(self, path: Path, data: bytes, state: dict[str, Any], mtime: float) -> dict[str, Any]:
        if path.name.endswith(".md"):
            return self._history(path, data.decode("utf-8", "replace"), state, mtime)
        return self._analytics(path, data, state)

    # -- analytics log ---------------------------------------------------------------------

    def _analytics(self, path: Path, data: bytes, state: dict[str, Any]) -> dict[str, Any]:
        fid = _file_id(path)
        tracker = self._tracker(state.get("launch"), state)
        for line in data.split(b"\n"):
            if not line.strip():
                continue
            try:
                obj = loads(line)
            except ValueError:
                self.bad_lines += 1
                continue
            if not isinstance(obj, dict):
                continue
            ts = obj.get("time") if isinstance(obj.get("time"), (int, float)) else None
            if obj.get("event") == "launched":
                if tracker is not None:
                    self._keep(path, tracker, tracker.finish(ts))
                tracker = self._tracker(f"{fid}:{int(ts or 0)}", {})
            if tracker is None:   # calls before any launch line: the log was cut at its start
                tracker = self._tracker(f"{fid}:0", {})
            assert tracker is not None
            self._keep(path, tracker, tracker.on_record(obj, float(ts) if ts is not None else None))
        if tracker is None:
            return state
        return {"launch": tracker.launch, "calls": tracker.calls, "open_call": tracker.open_call}

    @staticmethod
    def _tracker(launch: str | None, state: dict[str, Any]) -> _LaunchTracker | None:
        if launch is None:
            return None
        t = _LaunchTracker(launch)
        t.calls = int(state.get("calls", 0))
        t.open_call = state.get("open_call")
        return t

    def _keep(self, path: Path, tracker: _LaunchTracker, events: list[Any]) -> None:
        run_id = f"{RUN_PREFIX}aider-{tracker.launch.replace(':', '-')}"
        self._found += [Found(run_id, NAME, str(path.parent), ev) for ev in events]

    # -- chat history ------------------------------------------------------------------------

    def _history(self, path: Path, text: str, state: dict[str, Any], mtime: float) -> dict[str, Any]:
        fid = _file_id(path)
        launch, model, calls = state.get("launch"), state.get("model"), int(state.get("calls", 0))
        started = float(state.get("started", mtime))
        scanner = ReportScanner(quoted=True)

        def take(items: list[Any]) -> None:
            nonlocal calls
            for item in items:
                if isinstance(item, TokenReport):
                    calls += 1
                    ev = report_event(f"aider:{launch}:reply:{calls}", item, model, ts=started)
                    self._found.append(Found(f"{RUN_PREFIX}aider-{str(launch).replace(':', '-')}", NAME,
                                             str(path.parent), ev))

        for line in text.splitlines(keepends=True):
            m = _STARTED.match(line)
            if m:
                take(scanner.flush())
                scanner = ReportScanner(quoted=True)
                started = datetime.fromisoformat(m.group(1)).timestamp()   # aider writes local time
                launch, model, calls = f"{fid}:{int(started)}", None, 0
                continue
            m = _MAIN_MODEL.match(line)
            if m:
                model = m.group(1)
            if launch is None:
                launch = f"{fid}:0"
            take(scanner.feed(line))
        take(scanner.flush())
        return {"launch": launch, "model": model, "calls": calls, "started": started}

    def found(self) -> list[Found]:
        return self._found
