"""Prices kept between runs (guard.price_store): a later run prices as genai-prices does without
importing it, and a stale, foreign or damaged file is never believed."""
from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from guard.price_store import PriceStore
from guard.pricing import Pricer
from guard.usage import UsageEvent

WHEN = datetime(2026, 11, 30, 12, tzinfo=UTC)
MODELS = ("claude-sonnet-4-6", "claude-opus-4-1", "gpt-4o", "anthropic/claude-haiku-4-5", "no-such-model-xyz")


def _events() -> list[UsageEvent]:
    return [UsageEvent(key=m, source="t", model=m, input_tokens=250_000, output_tokens=2_000,
                       cache_read_tokens=30_000, cache_write_tokens=5_000, ts=WHEN.timestamp()) for m in MODELS]


def test_a_second_pricer_reads_the_store_and_prices_alike(tmp_path: Path) -> None:
    path = tmp_path / "prices.json"
    first = Pricer(store=PriceStore(path))
    expected = [first.price(ev) for ev in _events()]
    worst = first.worst_case("claude-sonnet-4-6", 300_000, 8_000, 1.25)
    assert path.stat().st_mode & 0o077 == 0
    again = Pricer(store=PriceStore(path))
    assert [again.price(ev) for ev in _events()] == expected
    assert again.worst_case("claude-sonnet-4-6", 300_000, 8_000, 1.25) == worst
    assert expected == [Pricer().price(ev) for ev in _events()]   # and as without a store
    assert not expected[-1].known                                  # an unknown model stays unknown


def test_a_run_priced_from_the_store_does_not_import_genai_prices(tmp_path: Path) -> None:
    path = tmp_path / "prices.json"
    Pricer(store=PriceStore(path)).warm()
    code = (f"import sys; from pathlib import Path; from guard.pricing import Pricer; "
            f"from guard.price_store import PriceStore; p = Pricer(store=PriceStore(Path({str(path)!r}))); "
            "p.warm(); print(p.worst_case('claude-sonnet-4-6', 10, 10) > 0, 'genai_prices' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["True", "False"]


def test_other_data_or_a_damaged_file_is_an_empty_store(tmp_path: Path) -> None:
    path = tmp_path / "prices.json"
    store = PriceStore(path, identity="data-a")
    day = WHEN.date()
    store.put_model("m", "anthropic", day, None)
    assert PriceStore(path, identity="data-a").model("m", "anthropic", day) == (True, None)
    assert PriceStore(path, identity="data-b").model("m", "anthropic", day) == (False, None)
    path.write_text("{not json")
    assert PriceStore(path, identity="data-a").model("m", "anthropic", day) == (False, None)
    path.write_text(json.dumps({"data": "data-a", "entries": {"model\0m\0anthropic\0" + day.isoformat(): [1]}}))
    assert PriceStore(path, identity="data-a").model("m", "anthropic", day) == (False, None)


def test_only_the_newest_day_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "prices.json"
    store = PriceStore(path, identity="d")
    old, new = datetime(2026, 11, 29, tzinfo=UTC).date(), WHEN.date()
    store.put_priciest("anthropic", old, "a")
    store.put_priciest("anthropic", new, "b")
    fresh = PriceStore(path, identity="d")
    assert fresh.priciest("anthropic", new) == "b"
    assert fresh.priciest("anthropic", old) is None
