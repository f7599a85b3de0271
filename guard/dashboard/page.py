"""The dashboard page: one template, served with its scripts linked, or written as one file with
the chart library, script, style and data inlined (`guard report --html`)."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from guard.dashboard.data import Range, history_view, live_runs
from guard.errors import ConfigError
from guard.ledger.records import iso
from guard.ledger.sql import SqlLedger

STATIC = Path(__file__).resolve().parent / "static"
ASSETS = ("chart.umd.min.js", "app.js")


def full_view(ledger: SqlLedger, home: Path, rng: Range, now: float | None = None) -> dict[str, Any]:
    now = time.time() if now is None else now
    return {**history_view(ledger, rng, now=now), "live": live_runs(ledger, home), "generated_at": iso(now),
            "ledger": ledger.describe()}


def _embed(view: dict[str, Any]) -> str:
    # inside <script>, "</" would end the element
    return json.dumps(view, separators=(",", ":")).replace("</", "<\\/")


def render(view: dict[str, Any], *, inline: bool) -> str:
    template = (STATIC / "index.html").read_text()
    if inline:
        style = f"<style>{(STATIC / 'style.css').read_text()}</style>"
        scripts = "".join(f"<script>{(STATIC / a).read_text()}</script>" for a in ASSETS)
    else:
        style = '<link rel="stylesheet" href="static/style.css">'
        scripts = "".join(f'<script src="static/{a}"></script>' for a in ASSETS)
    return (template.replace("<!--STYLE-->", style).replace("<!--SCRIPTS-->", scripts)
            .replace("<!--VIEW-->", _embed(view)))


def write_html(path: Path, ledger: SqlLedger, home: Path, *, period: str | None, ago: int = 0,
               since: str | None = None, until: str | None = None, tz: str | None = None) -> None:
    html = render(full_view(ledger, home, Range(period, ago, since, until, tz)), inline=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(html)
        tmp.replace(path)
    except OSError as e:
        raise ConfigError(f"--html {path}: {e.strerror or e}") from None
