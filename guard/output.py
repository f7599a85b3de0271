"""How commands print records: a table for a person, full cells for a pipe, CSV and JSON raw."""
from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Sequence
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

# wide enough that no id or cell is ever cut when the output goes to a file or a pipe
_PIPE_WIDTH = 100_000


def console(out: IO[str] | None = None, width: int | None = None) -> Console:
    """A rich console that only fits cells to the screen when there is one."""
    import sys

    from rich.console import Console

    stream = out or sys.stdout
    if width is None and not _isatty(stream):
        return Console(file=stream, width=_PIPE_WIDTH, highlight=False, no_color=True, soft_wrap=True)
    return Console(file=stream, width=width, highlight=False)


def _isatty(stream: IO[str]) -> bool:
    try:
        return os.isatty(stream.fileno())
    except (AttributeError, OSError, ValueError):
        return False


def flatten(obj: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """`{"usage": {"cost_usd": 1}}` -> `{"usage.cost_usd": 1}`; lists become JSON text."""
    flat: dict[str, Any] = {}
    for key, value in obj.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        elif isinstance(value, list):
            flat[name] = json.dumps(value)
        else:
            flat[name] = value
    return flat


def to_csv(records: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> str:
    """One row per record, raw numbers; columns are the union of every record's keys, in order."""
    rows = [flatten(r) for r in records]
    if columns is None:
        seen: dict[str, None] = {}
        for r in rows:
            seen.update(dict.fromkeys(r))
        columns = list(seen)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    for r in rows:
        w.writerow(["" if r.get(c) is None else r.get(c) for c in columns])
    return buf.getvalue()
