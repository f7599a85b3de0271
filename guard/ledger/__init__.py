"""The ledger: the only state guard keeps. `open_ledger` picks the backend from a URL."""
from __future__ import annotations

from pathlib import Path

from guard.errors import ConfigError, LedgerError
from guard.ledger.sql import SqlLedger

Ledger = SqlLedger


def open_ledger(url: str | None, home: Path, offline: str | None = None) -> SqlLedger:
    """`None` or `sqlite:` -> GUARD_HOME/ledger.db; `sqlite:///path`; `postgresql://...`
    (`offline`: what shared ceilings count while it is unreachable, guard.ledger.offline)."""
    from guard.home import prepare_home

    try:
        prepare_home(home)
    except OSError as e:
        raise LedgerError(f"GUARD_HOME {home}: {e.strerror}") from None
    path = sqlite_path(url, home)
    if path is not None:
        from guard.ledger.sqlite import SqliteLedger

        return SqliteLedger(path)
    assert url is not None
    if url.startswith(("postgresql://", "postgres://")):
        from guard.ledger.postgres import PostgresLedger  # type: ignore[import-not-found]

        return PostgresLedger(url, home, offline=offline)  # type: ignore[no-any-return]
    raise ConfigError(f"ledger: {url!r} is not sqlite:PATH or postgresql://...")


def open_ledger_for_reading(url: str | None, home: Path) -> SqlLedger:
    """Like `open_ledger`, but a SQLite ledger that does not exist yet is read as an empty one
    in memory: looking at runs never creates the file."""
    path = sqlite_path(url, home)
    if path is not None and not path.exists():
        from guard.home import prepare_home
        from guard.ledger.sqlite import SqliteLedger

        if home.is_dir():
            prepare_home(home)   # an old home left open to other users is closed, even by a look
        return SqliteLedger(Path(":memory:"))
    return open_ledger(url, home)


def sqlite_path(url: str | None, home: Path) -> Path | None:
    """The file a SQLite ledger URL names; None for any other backend."""
    if not url or url in ("sqlite", "sqlite:"):
        return home / "ledger.db"
    if url.startswith("sqlite:"):
        return Path(url.removeprefix("sqlite:").removeprefix("//")).expanduser()
    return None
