"""The per-model rate cache against genai-prices' own calculation, and the long-context tier."""
from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime

import pytest
from genai_prices import Usage, calc_price
from genai_prices.data_snapshot import get_snapshot
from genai_prices.types import ModelPrice, TimeOfDateConstraint

from guard.pricing import Pricer
from guard.usage import UsageEvent

# (input excl. caches, output, cache read, cache write, of which 1-hour)
USAGES = [
    (1, 0, 0, 0, 0),
    (20_000, 500, 10_000, 0, 0),
    (3_000, 1_200, 150_000, 40_000, 15_000),
    (150_000, 8_000, 49_000, 1_000, 1_000),     # 200,000 exactly: still the base tier
    (150_000, 8_000, 49_000, 1_001, 0),         # 200,001: the long-context tier
    (300_000, 1_000, 0, 100_000, 100_000),
    (90_000, 32_000, 400_000, 250_000, 60_000),
    (1_000_000, 128_000, 0, 0, 0),
]
WHEN = [datetime(2026, 1, 15, 12, tzinfo=UTC), datetime(2026, 11, 30, 12, tzinfo=UTC)]


def _grid_models() -> list[tuple[str, str]]:
    out = []
    for p in get_snapshot().providers:
        if p.id not in ("anthropic", "openai", "google", "deepseek", "mistral", "x-ai"):
            continue
        for m in p.models:
            if not isinstance(m.prices, ModelPrice) and any(
                    isinstance(c.constraint, TimeOfDateConstraint) for c in m.prices):
                continue
            out.append((p.id, m.id))
    return out


def _theirs(model: str, provider: str, u: tuple[int, ...], when: datetime) -> float:
    inp, out, cr, cw, cw1h = u
    usage = Usage(input_tokens=inp + cr + cw, output_tokens=out, cache_read_tokens=cr,
                  cache_write_tokens=cw, cache_write_1h_tokens=cw1h)
    return float(calc_price(usage, model_ref=model, provider_id=provider, genai_request_timestamp=when).total_price)


def test_cached_rates_equal_genai_prices_across_models_and_usages():
    p = Pricer()
    models = _grid_models()
    assert len(models) > 100
    compared = 0
    for provider, model in models:
        for when in WHEN:
            for u in USAGES:
                ev = UsageEvent(key="k", source="t", model=model, input_tokens=u[0], output_tokens=u[1],
                                cache_read_tokens=u[2], cache_write_tokens=u[3], cache_write_1h_tokens=u[4],
                                ts=when.timestamp())
                # The pricer guesses the provider from the name; price with the same one.
                ours = p._genai(ev, model, provider, when)
                try:
                    theirs = _theirs(model, provider, u, when)
                except LookupError:   # an id its own match rules do not match
                    assert ours is None, model
                    continue
                assert ours == pytest.approx(theirs, rel=1e-9, abs=1e-12), (provider, model, u, when)
                compared += 1
    assert compared > 0.9 * len(models) * len(WHEN) * len(USAGES)


def test_long_context_one_hour_writes_at_the_tiers_own_rate():
    # claude-sonnet-4-5 over 200k input (caches included): $6 input, $12 1h write, $7.50 5m write,
    # $0.60 read, $22.50 output per million, for every token of the request.
    p = Pricer()
    ev = UsageEvent(key="k", source="t", model="claude-sonnet-4-5", input_tokens=300_000,
                    cache_write_tokens=100_000, cache_write_1h_tokens=100_000, output_tokens=1_000)
    assert p.price(ev).usd == pytest.approx(300_000 * 6e-6 + 100_000 * 12e-6 + 1_000 * 22.5e-6)   # 3.0225
    ev = UsageEvent(key="k", source="t", model="claude-sonnet-4-5", input_tokens=50_000,
                    cache_read_tokens=120_000, cache_write_tokens=80_000, cache_write_1h_tokens=30_000,
                    output_tokens=2_000)
    hand = 50_000 * 6e-6 + 120_000 * 0.6e-6 + 50_000 * 7.5e-6 + 30_000 * 12e-6 + 2_000 * 22.5e-6
    assert p.price(ev).usd == pytest.approx(hand)   # 1.1520
    # Below the line the same request shape pays base rates, 1-hour writes at $6.
    ev = UsageEvent(key="k", source="t", model="claude-sonnet-4-5", input_tokens=100_000,
                    cache_write_tokens=50_000, cache_write_1h_tokens=50_000, output_tokens=1_000)
    assert p.price(ev).usd == pytest.approx(100_000 * 3e-6 + 50_000 * 6e-6 + 1_000 * 15e-6)


def test_prices_follow_the_events_date():
    # claude-sonnet-4-6 dropped its long-context surcharge on 2026-03-13.
    p = Pricer()
    def usd(day: datetime) -> float:
        return p.price(UsageEvent(key="k", source="t", model="claude-sonnet-4-6", input_tokens=250_000,
                                  ts=day.timestamp())).usd
    assert usd(datetime(2026, 3, 1, tzinfo=UTC)) == pytest.approx(250_000 * 6e-6)
    assert usd(datetime(2026, 3, 14, tzinfo=UTC)) == pytest.approx(250_000 * 3e-6)


def test_worst_case_in_usd():
    p = Pricer()
    assert p.worst_case("claude-sonnet-4-5", 10_000, 32_000) == pytest.approx(10_000 * 3e-6 + 32_000 * 15e-6)
    # Over the line the whole request is at the tier's rates.
    assert p.worst_case("claude-sonnet-4-5", 300_000, 0) == pytest.approx(300_000 * 6e-6)
    # Cache writes asked for: input priced at the write rate (5m $3.75, 1h $6).
    assert p.worst_case("claude-sonnet-4-5", 10_000, 0, cache_write_factor=1.25) == pytest.approx(10_000 * 3.75e-6)
    assert p.worst_case("claude-sonnet-4-5", 10_000, 0, cache_write_factor=2.0) == pytest.approx(10_000 * 6e-6)
    # Unknown: the provider's priciest model, never zero.
    assert p.worst_case("claude-unknown-99", 1_000, 1_000) >= p.worst_case("claude-opus-4-1", 1_000, 1_000)
    assert p.worst_case(None, 1_000, 1_000) > 0


def test_time_of_day_models_are_priced_by_genai_prices_itself():
    p = Pricer()
    when = datetime(2026, 6, 1, 17, 0, tzinfo=UTC)    # deepseek's off-peak window
    ev = UsageEvent(key="k", source="t", model="deepseek-chat", input_tokens=100_000, output_tokens=10_000,
                    ts=when.timestamp())
    assert p.price(ev).usd == pytest.approx(_theirs("deepseek-chat", "deepseek", (100_000, 10_000, 0, 0, 0), when))


def test_importing_pricing_does_not_load_genai_prices():
    code = "import sys, guard.pricing; print('genai_prices' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
