"""Follow JSON-lines files however their writer treats them: the live cost signal of most agents.

One `JsonlFollower` watches a directory (optionally recursively) for files matching a glob, or
one exact file, and hands every complete, valid JSON object to `on_record`. Writers append,
rewrite the file with `open(path, "w")`, truncate then write, unlink and recreate, or rename a
new file over it, at any size. The follower does not guess from inode and size alone: it keeps a
fingerprint of what it has read (the file's head and the bytes just before its offset, plus the
change time at the last complete read) and reads the file again from 0 whenever the fingerprint
no longer holds. Re-reading is safe because every record has a stable idempotency key: its own
`id`, or (`LineRef`) a digest of the line and its ordinal among equal lines of that version of
the file, and the meter merges reports of one key.

Reading happens on one thread of the follower's own, in rounds of at most `ROUND_BYTES` per file,
so a 20 GiB file or 10k lines/s never holds the run loop: `poll()` from a started follower only
wakes the reader and reports its failure. Holes of sparse files are skipped with SEEK_DATA,
never read. One inotify observer serves every follower of the process, and only changes to the
files a follower matches wake it (guard's own state.json writes beside a usage file do not).
"""
from __future__ import annotations

import errno
import fnmatch
import hashlib
import json
import os
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MAX_LINE_BYTES = 1 << 20  # a longer line is skipped: no real usage record is that big
ROUND_BYTES = 1 << 20     # read per file per round: the reader yields between rounds
HEAD_BYTES = 4096         # the head of the file kept as part of its fingerprint
TAIL_BYTES = 64           # the bytes just before the offset kept as part of the fingerprint
SAFETY_POLL = 1.0         # with inotify: a read every so often even if no event came
FALLBACK_POLL = 0.1       # without inotify: how often the reader looks
STOP_READ_SECONDS = 5.0   # at stop, the last records are read for at most this long
MAX_DEPTH = 64            # a record nested deeper is skipped: no usage record is, and parsers recurse

RecordCallback = Callable[[Path, dict[str, Any]], None]


class FollowError(Exception):
    """A file the follower was asked to follow cannot be read: the cost signal is blind."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


@dataclass(frozen=True)
class LineRef:
    """Where a record was read: enough to key a record that has no id of its own. `generation`
    counts the versions of the file seen (a rewrite starts a new one); `digest` is the line's
    content hash."""

    path: Path
    generation: int
    line_no: int
    digest: str


RefRecordCallback = Callable[[Path, dict[str, Any], LineRef], None]


@dataclass
class _FileState:
    inode: int
    offset: int
    generation: int = 0
    line_no: int = 0
    partial: bytes = b""
    discarding: bool = False  # inside an over-long line: drop bytes until its newline
    head: bytes = b""         # the first HEAD_BYTES read of this version of the file
    tail: bytes = b""         # the last TAIL_BYTES read before `offset`
    changed: tuple[int, int] | None = None  # (mtime_ns, ctime_ns) when the read last reached EOF
    verify: bool = True       # False for files followed from their end: only inode and size decide


@dataclass
class SkipCounts:
    malformed: int = 0
    not_utf8: int = 0
    too_long: int = 0
    not_object: int = 0
    too_deep: int = 0
    by_file: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return self.malformed + self.not_utf8 + self.too_long + self.not_object + self.too_deep


class _SharedObserver:
    """The one inotify observer of the process; followers schedule their directories on it."""

    _lock = threading.Lock()
    _observer: Any = None
    _users = 0

    @classmethod
    def schedule(cls, handler: Any, root: Path, recursive: bool, events: list[type]) -> Any:
        from watchdog.observers.inotify import InotifyObserver

        with cls._lock:
            if cls._observer is None:
                obs = InotifyObserver()
                obs.start()
                cls._observer = obs
            try:
                watch = cls._observer.schedule(handler, str(root), recursive=recursive, event_filter=events)
            except Exception:
                if cls._users == 0:
                    cls._shutdown()
                raise
            cls._users += 1
            return watch

    @classmethod
    def unschedule(cls, watch: Any) -> None:
        with cls._lock:
            if cls._observer is None:
                return
            try:
                cls._observer.unschedule(watch)
            except Exception:  # noqa: BLE001 - the directory may be gone already
                pass
            cls._users -= 1
            if cls._users <= 0:
                cls._shutdown()

    @classmethod
    def _shutdown(cls) -> None:
        obs, cls._observer, cls._users = cls._observer, None, 0
        if obs is not None:
            obs.stop()
            obs.join(timeout=2)


class JsonlFollower:
    def __init__(
        self,
        root: Path,
        pattern: str,
        on_record: RecordCallback | None = None,
        *,
        recursive: bool = False,
        from_start: bool = True,
        on_skip: Callable[[Path, str], None] | None = None,
        use_inotify: bool = True,
        exact: bool = False,
        on_ref_record: RefRecordCallback | None = None,
    ) -> None:
        """from_start=False: files that already exist are followed from their current end
        (a resumed session appends to an old transcript; only what comes after launch counts).
        exact=True: `pattern` is one file name, and that file must be a readable regular file
        whenever it exists (anything else is a FollowError). on_ref_record: like on_record,
        with the record's LineRef."""
        self.root = root
        self.pattern = pattern
        self.recursive = recursive
        self.exact = exact
        self.on_record = on_record
        self.on_ref_record = on_ref_record
        self.on_skip = on_skip
        self.skipped = SkipCounts()
        self._files: dict[Path, _FileState] = {}
        self._lock = threading.RLock()
        self._watch: Any = None
        self._use_inotify = use_inotify
        self.watch_mode = "none"
        self.failure: Exception | None = None
        self._wake = threading.Event()
        self._closing = False
        self._thread: threading.Thread | None = None
        self.rounds = 0  # reading rounds so far: what wakes the follower, for tests and benches
        self._from_start = from_start
        if not from_start:
            for path in self._matching():
                try:
                    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
                except OSError:
                    continue
                try:
                    st = os.fstat(fd)
                    state = _FileState(st.st_ino, st.st_size, verify=False)
                    state.head = os.pread(fd, HEAD_BYTES, 0)
                    state.tail = os.pread(fd, TAIL_BYTES, max(0, st.st_size - TAIL_BYTES))
                    state.changed = (st.st_mtime_ns, st.st_ctime_ns)
                    self._files[path] = state
                finally:
                    os.close(fd)

    # -- watching -------------------------------------------------------------------------

    def start(self) -> None:
        from watchdog.events import (
            DirCreatedEvent,
            DirMovedEvent,
            FileClosedEvent,
            FileCreatedEvent,
            FileDeletedEvent,
            FileModifiedEvent,
            FileMovedEvent,
            FileSystemEventHandler,
        )

        follower = self
        # Only changes: our own reads raise open/close-no-write events, which must not wake us
        # (they would make every read trigger the next one).
        changes: list[type] = [FileModifiedEvent, FileCreatedEvent, FileMovedEvent, FileClosedEvent,
                               FileDeletedEvent, DirCreatedEvent, DirMovedEvent]

        class Handler(FileSystemEventHandler):
            def on_any_event(self, event: Any) -> None:
                if event.is_directory or follower._concerns(event.src_path) or \
                        follower._concerns(getattr(event, "dest_path", "") or ""):
                    follower._wake.set()

        self.root.mkdir(parents=True, exist_ok=True)
        if self._use_inotify:
            try:
                self._watch = _SharedObserver.schedule(Handler(), self.root, self.recursive, changes)
                self.watch_mode = "inotify"
            except Exception:
                self._watch = None
        if self._watch is None:
            self.watch_mode = "polling"
        self._thread = threading.Thread(target=self._run, name=f"follow:{self.pattern}", daemon=True)
        self._thread.start()
        self._wake.set()

    def _concerns(self, raw: str | bytes) -> bool:
        name = os.path.basename(os.fsdecode(raw))
        return bool(name) and fnmatch.fnmatch(name, self.pattern)

    def _run(self) -> None:
        interval = SAFETY_POLL if self._watch is not None else FALLBACK_POLL
        while not self._closing:
            self._wake.wait(interval)
            if self._closing:
                return
            self._wake.clear()
            try:
                more = self._round()
            except Exception as e:  # noqa: BLE001 - kept for the run loop's next poll()
                self.failure = self.failure or e
                return
            if more:
                self._wake.set()
                time.sleep(0)  # let the run loop have the interpreter between rounds

    def stop(self) -> None:
        """The agent has ended: stop watching and read the last records, for at most
        STOP_READ_SECONDS (what is left unread past that is reported as a FollowError)."""
        if self._watch is not None:
            _SharedObserver.unschedule(self._watch)
            self._watch = None
        if self._thread is not None:
            self._closing = True
            self._wake.set()
            self._thread.join(timeout=STOP_READ_SECONDS)
            self._thread = None
        if self.failure is not None:
            raise self.failure
        deadline = time.monotonic() + STOP_READ_SECONDS
        while self._round():
            if time.monotonic() > deadline:
                raise FollowError(self.root / self.pattern, "still unread after "
                                  f"{STOP_READ_SECONDS:g} s at exit; the last records were not counted")
        with self._lock:
            # a last line without its newline is still a record
            for path, state in self._files.items():
                if state.partial and not state.discarding:
                    self._line(path, state, state.partial)
                    state.partial = b""

    # -- reading --------------------------------------------------------------------------

    def _matching(self) -> list[Path]:
        if self.exact:
            return [self.root / self.pattern]
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
        """Started: wake the reader and raise its failure, if any, in the caller's thread (the
        run loop must learn that the cost signal went blind). Not started: read everything
        that is there now."""
        if self.failure is not None:
            raise self.failure
        if self._thread is not None:
            self._wake.set()
            return
        while self._round():
            pass

    def read_now(self, max_rounds: int = 4) -> None:
        """Read what is there now, in the caller's thread, for at most `max_rounds` rounds: for an
        adapter that must see a record before it decides (aider's analytics line of a reply
        whose end it just saw on the terminal). The reader thread goes on with any rest."""
        if self.failure is not None:
            raise self.failure
        for _ in range(max_rounds):
            if not self._round():
                return
        self._wake.set()

    def _round(self) -> bool:
        """Read at most ROUND_BYTES from every matching file; True if any has more."""
        more = False
        with self._lock:
            self.rounds += 1
            for path in self._matching():
                more = self._read(path) or more
        return more

    def _skip(self, path: Path, reason: str) -> None:
        setattr(self.skipped, reason, getattr(self.skipped, reason) + 1)
        self.skipped.by_file[str(path)] = self.skipped.by_file.get(str(path), 0) + 1
        if self.on_skip:
            self.on_skip(path, reason)

    def _open(self, path: Path) -> int | None:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
        except OSError as e:
            if e.errno in (errno.ENOENT, errno.ENOTDIR):
                return None  # between an unlink and its recreation: the next round finds it
            raise FollowError(path, f"cannot be read ({os.strerror(e.errno or 0)})") from e
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            if self.exact:
                raise FollowError(path, "is not a regular file")
            return None
        return fd

    def _rewritten(self, fd: int, st: os.stat_result, state: _FileState) -> bool:
        if state.inode != st.st_ino or st.st_size < state.offset:
            return True
        if not state.verify:
            return False
        if state.head and os.pread(fd, len(state.head), 0) != state.head:
            return True
        if state.tail and os.pread(fd, len(state.tail), state.offset - len(state.tail)) != state.tail:
            return True
        # same bytes where we looked, same size, yet changed since a complete read: rewritten
        # with content of the same length (an append would have grown it)
        return (st.st_size == state.offset and state.changed is not None
                and state.changed != (st.st_mtime_ns, st.st_ctime_ns))

    def _read(self, path: Path) -> bool:
        fd = self._open(path)
        if fd is None:
            return False
        try:
            st = os.fstat(fd)
            state = self._files.get(path)
            if state is None:
                state = self._files[path] = _FileState(st.st_ino, 0, verify=self._from_start)
            elif self._rewritten(fd, st, state):
                state = self._files[path] = _FileState(st.st_ino, 0, generation=state.generation + 1)
            if st.st_size == state.offset:
                state.changed = (st.st_mtime_ns, st.st_ctime_ns)
                return False
            budget = ROUND_BYTES
            while budget > 0:
                self._skip_hole(fd, st.st_size, path, state)
                want = min(budget, 1 << 16)
                chunk = os.pread(fd, want, state.offset)
                if not chunk:
                    break
                budget -= len(chunk)
                self._remember(state, chunk)
                state.offset += len(chunk)
                self._feed(path, state, chunk)
            after = os.fstat(fd)
            if after.st_size == state.offset:
                state.changed = (after.st_mtime_ns, after.st_ctime_ns)
                return False
            state.changed = None
            return True
        finally:
            os.close(fd)

    def _skip_hole(self, fd: int, size: int, path: Path, state: _FileState) -> None:
        """A hole is NUL bytes nobody wrote: never read it. Whatever line it falls in is garbage."""
        try:
            data = os.lseek(fd, state.offset, os.SEEK_DATA)
        except OSError as e:
            if e.errno != errno.ENXIO:
                return  # no SEEK_DATA here: read the bytes
            data = size  # only a hole up to the end
        if data <= state.offset:
            return
        if not state.discarding:
            self._skip(path, "malformed")
        state.discarding = True
        state.partial = b""
        state.offset = data

    @staticmethod
    def _remember(state: _FileState, chunk: bytes) -> None:
        if len(state.head) < HEAD_BYTES:
            state.head += chunk[: HEAD_BYTES - len(state.head)]
        state.tail = (state.tail + chunk[-TAIL_BYTES:])[-TAIL_BYTES:]

    def _feed(self, path: Path, state: _FileState, chunk: bytes) -> None:
        data = state.partial + chunk if state.partial else chunk
        lines = data.split(b"\n")
        state.partial = lines.pop()
        for raw in lines:
            if state.discarding:
                state.discarding = False
                state.line_no += 1
                continue
            self._line(path, state, raw)
        if len(state.partial) > MAX_LINE_BYTES:
            if not state.discarding:
                self._skip(path, "too_long")
            state.discarding = True
            state.partial = b""

    def _line(self, path: Path, state: _FileState, raw: bytes) -> None:
        state.line_no += 1
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
            obj = json.loads(text, parse_int=_bounded_int)
        except RecursionError:
            self._skip(path, "too_deep")
            return
        except ValueError:
            self._skip(path, "malformed")
            return
        if not isinstance(obj, dict):
            self._skip(path, "not_object")
            return
        if text.count("{") + text.count("[") > MAX_DEPTH and _depth(obj) > MAX_DEPTH:
            self._skip(path, "too_deep")
            return
        if self.on_ref_record is not None:
            digest = hashlib.blake2b(raw, digest_size=12).hexdigest()
            self.on_ref_record(path, obj, LineRef(path, state.generation, state.line_no, digest))
        if self.on_record is not None:
            self.on_record(path, obj)


def _bounded_int(digits: str) -> int:
    """Python refuses to parse ints of over 4300 digits; such a count is just very large."""
    if len(digits) <= 400:
        return int(digits)
    return -(10**400) if digits.startswith("-") else 10**400


def _depth(obj: Any) -> int:
    """Nesting depth of a parsed JSON value, without recursion."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(obj, 1)]
    while stack:
        value, d = stack.pop()
        if isinstance(value, dict):
            value = list(value.values())
        if isinstance(value, list):
            deepest = max(deepest, d)
            stack.extend((v, d + 1) for v in value if isinstance(v, (dict, list)))
    return deepest
