"""Reports as terminal tables (rich), JSON or CSV."""
from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from typing import IO, TYPE_CHECKING, Any

from guard.report.rollup import Report
from guard.units import format_count, format_usd

if TYPE_CHECKING:   # rich is imported by the tables only: `--json` and `--csv` never pay for it
    from rich.table import Table

GROUP_COLUMNS = ("key", "spend_usd", "tokens", "input_tokens", "output_tokens", "cache_write_tokens",
                 "cache_read_tokens", "runs", "avg_usd", "p50_usd", "p90_usd", "halted_runs",
                 "finished_runs", "exhaustion_rate", "vs_team_median")


def to_json(report: Report) -> str:
    return json.dumps(report.as_json(), indent=2)


def to_csv(report: Report) -> str:
    """One row per group (the first column is named after the grouping)."""
    buf = io.StringIO()
    cols = [c for c in GROUP_COLUMNS if c != "vs_team_median" or report.group_by == "developer"]
    if report.group_by == "developer_day":
        cols = ["developer", "day", *cols[1:]]
    w = csv.writer(buf, lineterminator="\n")
    w.writerow([report.group_by if c == "key" else c for c in cols])
    for g in report.groups:
        w.writerow([g.get(c, "") if g.get(c) is not None else "" for c in cols])
    return buf.getvalue()


_usd = format_usd


def print_report(report: Report, out: IO[str] | None = None, width: int | None = None) -> None:
    from rich.table import Table

    from guard.output import console as make_console

    console = make_console(out, width)
    t = report.totals
    console.print(f"[bold]{report.label}[/bold] ({report.timezone}): {_usd(t['spend_usd'])} over "
                  f"{t['runs']} runs by {t['developers']} developers; "
                  f"{t['exhaustion_rate']:.0%} of finished runs halted by a ceiling")
    if report.group_by == "developer_day":
        console.print(developer_day_table(report))
        return
    table = Table(title=f"by {report.group_by}", title_justify="left")
    table.add_column(report.group_by)
    for name in ("spend", "tokens", "runs", "avg/run", "p50", "p90", "halted"):
        table.add_column(name, justify="right")
    dev = report.group_by == "developer"
    if dev:
        table.add_column("vs median", justify="right")
    for g in report.groups:
        row = [g["key"], _usd(g["spend_usd"]), format_count(g["tokens"]), str(g["runs"]),
               _usd(g["avg_usd"]), _usd(g["p50_usd"]), _usd(g["p90_usd"]), f"{g['exhaustion_rate']:.0%}"]
        if dev:
            ratio = g.get("vs_team_median")
            row.append(f"{ratio:.2f}x" if ratio is not None else "-")
        table.add_row(*row)
    console.print(table)
    if report.top_runs:
        top = Table(title="top-cost runs", title_justify="left")
        for name in ("run", "developer", "tool", "task", "cost", "tokens", "status"):
            top.add_column(name, justify="right" if name in ("cost", "tokens") else "left")
        for r in report.top_runs:
            status = r["status"] + (f" ({r['halt_ceiling']})" if r["halt_ceiling"] else "")
            top.add_row(r["id"], r["developer"], r["tool"], r["task"], _usd(r["cost_usd"]),
                        format_count(r["tokens"]), status)
        console.print(top)


def print_rows(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]],
               out: IO[str] | None = None, width: int | None = None) -> None:
    from rich.table import Table

    from guard.output import console as make_console

    console = make_console(out, width)
    table = Table(title=title, title_justify="left")
    for c in columns:
        table.add_column(c)
    for r in rows:
        table.add_row(*[str(x) for x in r])
    console.print(table)


def developer_day_table(report: Report) -> Table:
    """Developers down, days across: who spent what, when."""
    from rich.table import Table

    days = sorted({g["day"] for g in report.groups})
    cells: dict[str, dict[str, float]] = {}
    for g in report.groups:
        cells.setdefault(g["developer"], {})[g["day"]] = g["spend_usd"]
    table = Table(title="spend by developer and day", title_justify="left")
    table.add_column("developer")
    for d in days:
        table.add_column(d[5:], justify="right")
    table.add_column("total", justify="right")
    for dev in sorted(cells):
        row = cells[dev]
        table.add_row(dev, *[_usd(row[d]) if d in row else "-" for d in days], _usd(sum(row.values())))
    return table
