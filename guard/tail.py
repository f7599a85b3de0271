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
never read. One inotify descriptor and one thread (`_Inotify`, no watchdog: its threads cost
more than the reading) serve every follower of the process, and only changes to the files a
follower matches wake it (guard's own state.json writes beside a usage file do not). Wakes that
come within a short gap of a round that read lines are gathered into the next round.
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
WATCH_GAP = 0.005         # after the watcher woke a follower, it lets further events gather
ROUND_GAP = 0.02          # after a round that read lines, the next waits this long ...
SLOW_ROUND_GAP = 0.04     # ... or this long after a round of fewer than SLOW_ROUND_LINES lines:
SLOW_ROUND_LINES = 100    # a writer under 2,500 lines/s costs a batch and a commit per 40 ms
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
    content hash (computed when asked: most records have an id and never need it)."""

    path: Path
    generation: int
    line_no: int
    raw: bytes = field(repr=False)

    @property
    def digest(self) -> str:
        return hashlib.blake2b(self.raw, digest_size=12).hexdigest()


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


class _Inotify:
    """The one inotify watcher of the process: one descriptor, one thread, for every follower.
    Each event costs a read and a name match here, nothing more: only a change to a file a
    follower matches (or a directory appearing under a recursive one) wakes that follower."""

    MASK = (0x2 | 0x4 | 0x8 | 0x40 | 0x80 | 0x100 | 0x200 | 0x400 | 0x800)
    # IN_MODIFY IN_ATTRIB IN_CLOSE_WRITE IN_MOVED_FROM IN_MOVED_TO IN_CREATE IN_DELETE
    # IN_DELETE_SELF IN_MOVE_SELF: changes only (our own reads raise open/close-nowrite, which
    # must not wake us, or every read would trigger the next)
    IN_ISDIR, IN_IGNORED, IN_Q_OVERFLOW = 0x40000000, 0x8000, 0x4000
    NEW_DIR = 0x100 | 0x80   # IN_CREATE | IN_MOVED_TO

    _lock = threading.Lock()
    _shared: _Inotify | None = None

    def __init__(self) -> None:
        import ctypes

        self._libc = ctypes.CDLL(None, use_errno=True)
        fd = self._libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        self.fd = fd
        self._stop_r, self._stop_w = os.pipe()
        self._dirs: dict[int, tuple[bytes, set[JsonlFollower]]] = {}   # wd -> (dir, followers)
        self._followers: dict[JsonlFollower, set[int]] = {}
        self._thread = threading.Thread(target=self._run, name="guard-inotify", daemon=True)
        self._thread.start()

    @classmethod
    def schedule(cls, follower: JsonlFollower) -> None:
        with cls._lock:
            if cls._shared is None:
                cls._shared = _Inotify()
            me = cls._shared
            me._followers.setdefault(follower, set())
            try:
                me._add_tree(os.fsencode(follower.root), follower)
            except OSError:
                me._forget(follower)
                raise

    @classmethod
    def unschedule(cls, follower: JsonlFollower) -> None:
        with cls._lock:
            me = cls._shared
            if me is None or follower not in me._followers:
                return
            me._forget(follower)
            if me._followers:
                return
            cls._shared = None
        me._shutdown()   # not under the lock: the thread may be waiting for it

    def _forget(self, follower: JsonlFollower) -> None:
        for wd in self._followers.pop(follower, set()):
            entry = self._dirs.get(wd)
            if entry is None:
                continue
            entry[1].discard(follower)
            if not entry[1]:
                del self._dirs[wd]
                self._libc.inotify_rm_watch(self.fd, wd)

    def _add_tree(self, top: bytes, follower: JsonlFollower) -> None:
        """Watch `top` for `follower` (and, for a recursive one, every directory below it)."""
        todo = [top]
        while todo:
            path = todo.pop()
            wd = self._libc.inotify_add_watch(self.fd, path, self.MASK)
            if wd < 0:
                import ctypes

                err = ctypes.get_errno()
                if path == top:
                    raise OSError(err, os.strerror(err), os.fsdecode(path))
                continue   # a subdirectory gone or unreadable meanwhile: the rounds still walk it
            entry = self._dirs.setdefault(wd, (path, set()))
            entry[1].add(follower)
            self._followers[follower].add(wd)
            if follower.recursive:
                try:
                    todo += [e.path for e in os.scandir(path) if e.is_dir(follow_symlinks=False)]
                except OSError:
                    pass

    def _run(self) -> None:
        import select
        import struct

        header = struct.Struct("iIII")
        while True:
            try:
                ready, _, _ = select.select([self.fd, self._stop_r], [], [])
            except InterruptedError:
                continue
            if self._stop_r in ready:
                return
            try:
                data = os.read(self.fd, 64 * 1024)
            except BlockingIOError:
                continue
            except OSError:
                return
            woken: set[JsonlFollower] = set()
            with self._lock:
                pos = 0
                while pos + header.size <= len(data):
                    wd, mask, _cookie, size = header.unpack_from(data, pos)
                    name = data[pos + header.size:pos + header.size + size].rstrip(b"\0")
                    pos += header.size + size
                    if mask & self.IN_Q_OVERFLOW:   # events were lost: everyone reads again
                        woken.update(self._followers)
                        continue
                    entry = self._dirs.get(wd)
                    if entry is None:
                        continue
                    if mask & self.IN_IGNORED:
                        self._dirs.pop(wd, None)
                        for f in entry[1]:
                            self._followers.get(f, set()).discard(wd)
                        continue
                    for f in entry[1]:
                        if mask & self.IN_ISDIR:
                            if f.recursive and mask & self.NEW_DIR and name:
                                self._add_tree(entry[0] + b"/" + name, f)
                            woken.add(f)
                        elif not name or f._concerns(name):
                            woken.add(f)
            for f in woken:
                f._wake.set()
            if woken:
                # the kernel merges a writer's repeated events while they wait unread: at 10k
                # writes/s that is one event per pause here instead of ten thousand
                time.sleep(WATCH_GAP)

    def _shutdown(self) -> None:
        os.write(self._stop_w, b"!")
        self._thread.join(timeout=2)
        for fd in (self.fd, self._stop_r, self._stop_w):
            os.close(fd)


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
        self._read_any = False  # the last round read something
        self._round_lines = 0   # ... and how many lines
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
        self.root.mkdir(parents=True, exist_ok=True)
        if self._use_inotify:
            try:
                _Inotify.schedule(self)
                self._watch = self
                self.watch_mode = "inotify"
            except OSError:
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
            elif self._read_any:
                # A writer at 1,000 lines/s wakes us at each of its writes: gather what comes
                # within the gap into one round (one batch, one commit) instead of one each.
                # A line after a quiet spell is read at once; a fast writer is read sooner
                # (its crossing line is then decided within ROUND_GAP of being written).
                time.sleep(SLOW_ROUND_GAP if self._round_lines < SLOW_ROUND_LINES else ROUND_GAP)

    def stop(self) -> None:
        """The agent has ended: stop watching and read the last records, for at most
        STOP_READ_SECONDS (what is left unread past that is reported as a FollowError)."""
        if self._watch is not None:
            _Inotify.unschedule(self)
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
            self._read_any = False
            self._round_lines = 0
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
                self._skip_hole(fd, path, state)
                want = min(budget, 1 << 16)
                chunk = os.pread(fd, want, state.offset)
                if not chunk:
                    break
                budget -= len(chunk)
                self._read_any = True
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

    def _skip_hole(self, fd: int, path: Path, state: _FileState) -> None:
        """A hole is NUL bytes nobody wrote: never read it. Whatever line it falls in is garbage."""
        data = _next_data(fd, state.offset)
        if data is None:
            # no data past the offset, or none yet: the size the caller saw may be stale (a
            # writer that truncated meanwhile), and skipping to it would skip its next line
            now = os.fstat(fd).st_size
            data = _next_data(fd, state.offset) if now > state.offset else state.offset
            if data is None:
                data = now   # only a hole up to the end
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
        self._round_lines += 1
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
            obj = _loads(text)
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
            self.on_ref_record(path, obj, LineRef(path, state.generation, state.line_no, raw))
        if self.on_record is not None:
            self.on_record(path, obj)


def _next_data(fd: int, offset: int) -> int | None:
    """Where the next written byte at or after `offset` is; None when there is none (ENXIO).
    Without SEEK_DATA, `offset` itself: the bytes are read as they are."""
    try:
        return os.lseek(fd, offset, os.SEEK_DATA)
    except OSError as e:
        return None if e.errno == errno.ENXIO else offset


def _loads(text: str) -> Any:
    """json.loads, with a hook for huge integers only when the line holds one: a hook called
    for every integer of every line doubles the cost of parsing."""
    try:
        return json.loads(text)
    except RecursionError:
        raise
    except ValueError:
        return json.loads(text, parse_int=_bounded_int)   # malformed raises again


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
