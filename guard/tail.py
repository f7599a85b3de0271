"""Follow append-only JSON-lines files as they grow: the live cost signal of most agents.

One `JsonlFollower` watches a directory (optionally recursively) for files matching a glob and
hands every complete, valid JSON object to `on_record`. It survives what real agents and
editors do to files: truncation (restart from 0), replacement (new inode, restart from 0),
partial lines (held until the newline arrives), and garbage (skipped and counted, never fatal).
watchdog's inotify observer wakes it; a polling observer is the fallback where inotify is not
available, and `poll()` may be called at any time as a safety net.
"""
from __future__ import annotations

import fnmatch
import json
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MAX_LINE_BYTES = 1 << 20  # a longer line is skipped: no real usage record is that big

RecordCallback = Callable[[Path, dict[str, Any]], None]


@dataclass
class _FileState:
    inode: int
    offset: int
    partial: bytes = b""
    discarding: bool = False  # inside an over-long line: drop bytes until its newline


@dataclass
class SkipCounts:
    malformed: int = 0
    not_utf8: int = 0
    too_long: int = 0
    not_object: int = 0
    by_file: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return self.malformed + self.not_utf8 + self.too_long + self.not_object


class JsonlFollower:
    def __init__(
        self,
        root: Path,
        pattern: str,
        on_record: RecordCallback,
        *,
        recursive: bool = False,
        from_start: bool = True,
        on_skip: Callable[[Path, str], None] | None = None,
        use_inotify: bool = True,
    ) -> None:
        """from_start=False: files that already exist are followed from their current end
        (a resumed session appends to an old transcript; only what comes after launch counts)."""
        self.root = root
        self.pattern = pattern
        self.recursive = recursive
        self.on_record = on_record
        self.on_skip = on_skip
        self.skipped = SkipCounts()
        self._files: dict[Path, _FileState] = {}
        self._lock = threading.RLock()
        self._observer: Any = None
        self._use_inotify = use_inotify
        self.watch_mode = "none"
        self.failure: Exception | None = None
        if not from_start:
            for path in self._matching():
                try:
                    st = path.stat()
                except OSError:
                    continue
                self._files[path] = _FileState(st.st_ino, st.st_size)

    # -- watching -------------------------------------------------------------------------

    def start(self) -> None:
        from watchdog.events import (
            DirCreatedEvent,
            DirMovedEvent,
            FileClosedEvent,
            FileCreatedEvent,
            FileModifiedEvent,
            FileMovedEvent,
            FileSystemEventHandler,
        )

        follower = self
        # Only changes: our own reads raise open/close-no-write events, which must not wake us
        # (they would make every read trigger the next one).
        changes = [FileModifiedEvent, FileCreatedEvent, FileMovedEvent, FileClosedEvent,
                   DirCreatedEvent, DirMovedEvent]

        class Handler(FileSystemEventHandler):
            def on_any_event(self, event: Any) -> None:
                if type(event) in changes:
                    follower._poll_from_watcher()

        self.root.mkdir(parents=True, exist_ok=True)
        observer: Any = None
        if self._use_inotify:
            try:
                from watchdog.observers.inotify import InotifyObserver

                observer = InotifyObserver()
                observer.schedule(Handler(), str(self.root), recursive=self.recursive, event_filter=changes)
                observer.start()
                self.watch_mode = "inotify"
            except Exception:
                observer = None
        if observer is None:
            from watchdog.observers.polling import PollingObserver

            observer = PollingObserver(timeout=0.2)
            observer.schedule(Handler(), str(self.root), recursive=self.recursive, event_filter=changes)
            observer.start()
            self.watch_mode = "polling"
        self._observer = observer
        self.poll()

    def stop(self) -> None:
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=2)
            self._observer = None
        self.poll()
        with self._lock:
            # the agent has ended: a last line without its newline is still a record
            for path, state in self._files.items():
                if state.partial and not state.discarding:
                    self._line(path, state.partial)
                    state.partial = b""

    # -- reading --------------------------------------------------------------------------

    def _matching(self) -> list[Path]:
        if not self.root.is_dir():
            return []
        if self.recursive:
            out = []
            for dirpath, _dirs, files in os.walk(self.root):
                for name in files:
                    if fnmatch.fnmatch(name, self.pattern):
                        out.append(Path(dirpath) / name)
            return out
        return [p for p in self.root.iterdir() if fnmatch.fnmatch(p.name, self.pattern) and p.is_file()]

    def poll(self) -> None:
        """Read whatever is new in every matching file. Safe to call from any thread. A failure
        of the watcher thread (a parser bug, say) is raised here, in the caller's thread: the
        run loop must learn that the cost signal went blind, not go on as if nothing was spent."""
        if self.failure is not None:
            raise self.failure
        with self._lock:
            for path in self._matching():
                self._read(path)

    def _poll_from_watcher(self) -> None:
        try:
            self.poll()
        except Exception as e:  # noqa: BLE001 - kept for the run loop's next poll()
            self.failure = self.failure or e

    def _skip(self, path: Path, reason: str) -> None:
        setattr(self.skipped, reason, getattr(self.skipped, reason) + 1)
        self.skipped.by_file[str(path)] = self.skipped.by_file.get(str(path), 0) + 1
        if self.on_skip:
            self.on_skip(path, reason)

    def _read(self, path: Path) -> None:
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            return
        try:
            st = os.fstat(fd)
            state = self._files.get(path)
            if state is None or state.inode != st.st_ino or st.st_size < state.offset:
                # new, replaced or truncated: read from the beginning
                state = _FileState(st.st_ino, 0)
                self._files[path] = state
            if st.st_size == state.offset:
                return
            os.lseek(fd, state.offset, os.SEEK_SET)
            while True:
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    break
                state.offset += len(chunk)
                self._feed(path, state, chunk)
        finally:
            os.close(fd)

    def _feed(self, path: Path, state: _FileState, chunk: bytes) -> None:
        data = state.partial + chunk
        lines = data.split(b"\n")
        state.partial = lines.pop()
        for raw in lines:
            if state.discarding:
                state.discarding = False
                continue
            self._line(path, raw)
        if len(state.partial) > MAX_LINE_BYTES:
            if not state.discarding:
                self._skip(path, "too_long")
            state.discarding = True
            state.partial = b""

    def _line(self, path: Path, raw: bytes) -> None:
        raw = raw.strip()
        if not raw:
            return
        if len(raw) > MAX_LINE_BYTES:
            self._skip(path, "too_long")
            return
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            self._skip(path, "not_utf8")
            return
        try:
            obj = json.loads(text)
        except ValueError:
            self._skip(path, "malformed")
            return
        if not isinstance(obj, dict):
            self._skip(path, "not_object")
            return
        self.on_record(path, obj)
