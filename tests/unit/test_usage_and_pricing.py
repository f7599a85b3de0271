import json

import pytest

from guard.errors import ConfigError
from guard.pricing import Pricer, load_overrides
from guard.usage import Totals, UsageEvent, from_anthropic_usage


def test_merge_keeps_max_of_each_field():
    a = UsageEvent("k", "transcript", model="m", input_tokens=10, output_tokens=1, steps=1)
    b = UsageEvent("k", "otlp", model="m", input_tokens=10, output_tokens=250, cost_usd=0.5)
    m = a.merge(b)
    assert (m.input_tokens, m.output_tokens, m.steps, m.cost_usd) == (10, 250, 1, 0.5)
    assert m.source == "transcript+otlp"


def test_from_anthropic_usage_splits_one_hour_cache_writes():
    ev = from_anthropic_usage("k", "s", {
        "input_tokens": 3, "output_tokens": 7, "cache_creation_input_tokens": 100,
        "cache_read_input_tokens": 50,
        "cache_creation": {"ephemeral_5m_input_tokens": 60, "ephemeral_1h_input_tokens": 40}})
    assert (ev.input_tokens, ev.cache_write_tokens, ev.cache_write_1h_tokens, ev.cache_read_tokens) == (3, 100, 40, 50)


def test_totals_add_and_remove():
    t = Totals()
    ev = UsageEvent("k", "s", input_tokens=5, output_tokens=5, steps=1)
    t.add(ev, 1.0)
    t.add(ev, 1.0, sign=-1)
    assert t.tokens == 0 and t.cost_usd == 0 and t.steps == 0


def test_pricing_counts_cache_at_own_rates():
    # FACTS.md: 20,000 input + 10,000 cache read + 500 output on claude-sonnet-4-6 is $0.0705
    ev = UsageEvent("k", "s", model="claude-sonnet-4-6", input_tokens=20_000, cache_read_tokens=10_000,
                    output_tokens=500)
    assert Pricer().price(ev).usd == pytest.approx(0.0705)


def test_one_hour_cache_writes_cost_more_than_five_minute_ones():
    p = Pricer()
    five = p.price(UsageEvent("k", "s", model="claude-sonnet-4-6", cache_write_tokens=1_000_000)).usd
    hour = p.price(UsageEvent("k", "s", model="claude-sonnet-4-6", cache_write_tokens=1_000_000,
                              cache_write_1h_tokens=1_000_000)).usd
    assert five == pytest.approx(3.75) and hour == pytest.approx(6.0)


def test_stated_cost_wins():
    ev = UsageEvent("k", "s", model="claude-sonnet-4-6", input_tokens=10**6, cost_usd=0.25)
    assert Pricer().price(ev).usd == 0.25


def test_unknown_model_fails_closed_at_priciest_known_price():
    p = Pricer()
    unknown = p.price(UsageEvent("k", "s", model="claude-nonexistent-9", input_tokens=10**6, output_tokens=10**6))
    known = p.price(UsageEvent("k", "s", model="claude-sonnet-4-6", input_tokens=10**6, output_tokens=10**6))
    assert not unknown.known and unknown.usd > known.usd


def test_override_file(tmp_path):
    f = tmp_path / "prices.json"
    f.write_text(json.dumps({"my-model": {"input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6}}))
    p = Pricer(load_overrides(f))
    assert p.price(UsageEvent("k", "s", model="my-model", input_tokens=1000, output_tokens=1000)).usd == pytest.approx(0.003)


def test_bad_override_file_names_the_file(tmp_path):
    f = tmp_path / "prices.json"
    f.write_text(json.dumps({"my-model": {"input_cost_per_token": "cheap"}}))
    with pytest.raises(ConfigError, match="prices.json: my-model"):
        load_overrides(f)


def test_infinite_counts_are_capped_not_dropped():
    ev = from_anthropic_usage("k", "s", {"input_tokens": float("inf"), "output_tokens": 5})
    assert ev.input_tokens == 10**9 and ev.output_tokens == 5 and ev.estimated
