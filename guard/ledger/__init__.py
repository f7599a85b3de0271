"""The ledger: the only state guard keeps. `open_ledger` picks the backend from a URL."""
from __future__ import annotations

from pathlib import Path

from guard.errors import ConfigError, LedgerError
from guard.ledger.sql import SqlLedger

Ledger = SqlLedger


def open_ledger(url: str | None, home: Path) -> SqlLedger:
    """`None` or `sqlite:` -> GUARD_HOME/ledger.db; `sqlite:///path`; `postgresql://...`."""
    from guard.home import prepare_home

    try:
        prepare_home(home)
    except OSError as e:
        raise LedgerError(f"GUARD_HOME {home}: {e.strerror}") from None
    if not url or url in ("sqlite", "sqlite:"):
        from guard.ledger.sqlite import SqliteLedger

        return SqliteLedger(home / "ledger.db")
    if url.startswith("sqlite:"):
        from guard.ledger.sqlite import SqliteLedger

        path = url.removeprefix("sqlite:").removeprefix("//")
        return SqliteLedger(Path(path).expanduser())
    if url.startswith(("postgresql://", "postgres://")):
        from guard.ledger.postgres import PostgresLedger  # type: ignore[import-not-found]

        return PostgresLedger(url, home)  # type: ignore[no-any-return]
    raise ConfigError(f"ledger: {url!r} is not sqlite:PATH or postgresql://...")
