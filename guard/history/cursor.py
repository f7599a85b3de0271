"""How far `guard import` has read a file, and reading only what was appended since.

A cursor is (inode, offset, hash of the bytes before the offset's first 4 KiB). The file is
read again from the start when it is another file (inode), shorter than the offset (truncated), or
its first bytes changed (rewritten in place): re-reading is safe, since imports deduplicate by key.
Reads stop at the last newline, so a line still being written is read whole next time.
"""
from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

PREFIX_BYTES = 4096


@dataclass(frozen=True)
class Cursor:
    path: str
    source: str
    inode: int = 0
    size: int = 0
    mtime: float = 0.0
    offset: int = 0
    prefix_hash: str = ""
    state: dict[str, Any] = field(default_factory=dict)   # a parser's carry-over (model, call count)


@dataclass(frozen=True)
class ReadJob:
    """A file with something new to read: its place in the import's order, its size now."""

    order: int
    path: Path
    cursor: Cursor | None
    size: int


def prefix_hash(head: bytes) -> str:
    return hashlib.sha1(head[:PREFIX_BYTES]).hexdigest()


def unchanged(cursor: Cursor | None, st: os.stat_result) -> bool:
    """Nothing to read: same file, same size and mtime as when it was last read to its end."""
    return (cursor is not None and cursor.inode == st.st_ino and cursor.size == st.st_size
            and cursor.mtime == st.st_mtime and cursor.offset == st.st_size)


def read_new(path: Path, cursor: Cursor | None, source: str) -> tuple[bytes, Cursor]:
    """The complete lines appended since `cursor` (all of them for a new or replaced file), and the
    cursor after them. The returned cursor's state is the old one's only when the file continues."""
    with open(path, "rb") as f:
        st = os.fstat(f.fileno())
        head = f.read(PREFIX_BYTES)
        start = 0
        state: dict[str, Any] = {}
        if (cursor is not None and cursor.inode == st.st_ino and cursor.offset <= st.st_size
                and cursor.prefix_hash == prefix_hash(head[:min(cursor.offset, PREFIX_BYTES)])):
            start, state = cursor.offset, cursor.state
        f.seek(start)
        data = f.read(st.st_size - start)
    end = data.rfind(b"\n") + 1
    data = data[:end]
    offset = start + end
    new = Cursor(path=str(path), source=source, inode=st.st_ino, size=st.st_size, mtime=st.st_mtime,
                 offset=offset, prefix_hash=prefix_hash(head[:min(offset, PREFIX_BYTES)]), state=state)
    return data, new


def with_state(cursor: Cursor, state: dict[str, Any]) -> Cursor:
    return replace(cursor, state=state)


Feed = Callable[[Path, bytes, dict[str, Any], float], dict[str, Any]]


def read_each(jobs: list[ReadJob], source: str, feed: Feed) -> list[Cursor]:
    """Read the jobs in order, handing each file's new lines and carried state to `feed`."""
    out = []
    for job in jobs:
        data, after = read_new(job.path, job.cursor, source)
        out.append(with_state(after, feed(job.path, data, after.state, after.mtime)))
    return out


def bytes_read(before: Cursor | None, after: Cursor) -> int:
    continued = before is not None and before.inode == after.inode and before.offset <= after.offset
    return after.offset - (before.offset if continued and before is not None else 0)
