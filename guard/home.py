"""GUARD_HOME is private: 0700, and the ledger files in it 0600. It holds what every run spent,
the spool of a team ledger and each run's scratch files, none of which other local users need.
An existing home created by an older guard is tightened the same way."""
from __future__ import annotations

import os
import stat
from pathlib import Path

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600
LEDGER_FILES = ("ledger.db", "ledger.db-wal", "ledger.db-shm")


def prepare_home(home: Path) -> None:
    home.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR)
    (home / "runs").mkdir(exist_ok=True, mode=PRIVATE_DIR)
    for d in (home, home / "runs"):
        _tighten(d, PRIVATE_DIR)
    for name in LEDGER_FILES:
        _tighten(home / name, PRIVATE_FILE)


def create_private_file(path: Path) -> None:
    """Create `path` 0600 if it does not exist (SQLite then makes -wal and -shm alike)."""
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, PRIVATE_FILE))
    except FileExistsError:
        pass


def _tighten(path: Path, mode: int) -> None:
    try:
        st = path.lstat()
    except FileNotFoundError:
        return
    if st.st_uid == os.getuid() and not stat.S_ISLNK(st.st_mode) and stat.S_IMODE(st.st_mode) & 0o077:
        os.chmod(path, stat.S_IMODE(st.st_mode) & ~0o077)
