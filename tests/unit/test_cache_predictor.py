"""Cache reads predicted from the same conversation's previous request."""
from __future__ import annotations

import pytest

from guard.pricing import Pricer
from guard.proxy.cache_predictor import CachePredictor, conversation_key


def req(*turns: str, system: str = "You are Claude Code.") -> dict[str, object]:
    msgs = [{"role": "user" if i % 2 == 0 else "assistant", "content": t} for i, t in enumerate(turns)]
    return {"model": "claude-sonnet-4-5", "system": system, "messages": msgs}


def test_a_conversation_keeps_its_key_as_it_grows_and_others_differ() -> None:
    k = conversation_key(req("fix the bug"))
    assert k is not None and k == conversation_key(req("fix the bug", "ok", "more"))
    assert k != conversation_key(req("another task"))
    assert k != conversation_key(req("fix the bug", system="a sub-agent"))
    assert conversation_key({"messages": []}) is None and conversation_key("x") is None


def test_prediction_follows_the_previous_requests_cache_and_expires() -> None:
    p = CachePredictor()
    k = conversation_key(req("task"))
    assert p.predict(k, 50_000, now=0.0) == 0                    # first request: nothing cached yet
    p.observe(k, cache_read_tokens=0, cache_write_tokens=40_000, now=10.0)
    assert p.predict(k, 50_000, now=20.0) == 40_000
    assert p.predict(k, 30_000, now=20.0) == 30_000              # never more than the request's input
    assert p.predict(k, 50_000, now=10.0 + 301) == 0             # 5-minute entry gone
    p.observe(k, cache_read_tokens=40_000, cache_write_tokens=5_000, now=400.0, one_hour=True)
    assert p.predict(k, 60_000, now=400.0 + 3000) == 45_000
    p.observe(k, 0, 0, now=500.0)                                # caching off: predict nothing
    assert p.predict(k, 60_000, now=501.0) == 0


def test_bounded_number_of_conversations() -> None:
    p = CachePredictor(max_conversations=2)
    for name in ("a", "b", "c"):
        p.observe(name, 100, 0, now=0.0)
    assert p.predict("a", 1000, now=1.0) == 0 and p.predict("c", 1000, now=1.0) == 100


def test_worst_case_prices_predicted_reads_at_the_read_rate() -> None:
    pr = Pricer()
    full = pr.worst_case("claude-sonnet-4-5", 100_000, 4_096, cache_write_factor=1.25)
    predicted = pr.worst_case("claude-sonnet-4-5", 100_000, 4_096, cache_write_factor=1.25, cache_read_tokens=90_000)
    assert full == pytest.approx(100_000 * 3.75e-6 + 4_096 * 15e-6)
    assert predicted == pytest.approx(10_000 * 3.75e-6 + 90_000 * 0.3e-6 + 4_096 * 15e-6)
