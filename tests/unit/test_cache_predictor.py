"""Cache reads predicted from the same conversation's previous request."""
from __future__ import annotations

import pytest

from guard.pricing import Pricer
from guard.proxy.cache_predictor import CachePredictor, conversation_key
from guard.proxy.wire import Estimate
from guard.usage import UsageEvent


def req(*turns: str, system: str = "You are Claude Code.") -> dict[str, object]:
    msgs = [{"role": "user" if i % 2 == 0 else "assistant", "content": t} for i, t in enumerate(turns)]
    return {"model": "claude-sonnet-4-5", "system": system, "messages": msgs}


def test_a_conversation_keeps_its_key_as_it_grows_and_others_differ() -> None:
    k = conversation_key(req("fix the bug"))
    assert k is not None and k == conversation_key(req("fix the bug", "ok", "more"))
    assert k != conversation_key(req("another task"))
    assert k != conversation_key(req("fix the bug", system="a sub-agent"))
    assert conversation_key({"messages": []}) is None and conversation_key("x") is None
    marked = {"model": "m", "system": "s", "messages": [
        {"role": "user", "content": [{"type": "text", "text": "task", "cache_control": {"type": "ephemeral"}}]}]}
    moved = {"model": "m", "system": "s", "messages": [
        {"role": "user", "content": [{"type": "text", "text": "task"}]}, {"role": "assistant", "content": "ok"}]}
    assert conversation_key(marked) == conversation_key(moved)   # the breakpoint moved on: same talk


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


def _est(tokens: int, model: str = "claude-sonnet-4-5") -> Estimate:
    return Estimate(model, tokens, 32_000, 1.25)


def _usage(input_tokens: int, read: int, write: int, estimated: bool = False) -> UsageEvent:
    return UsageEvent(key="k", source="proxy", model="claude-sonnet-4-5", input_tokens=input_tokens,
                      output_tokens=100, cache_read_tokens=read, cache_write_tokens=write, estimated=estimated)


def test_the_previous_prompt_calibrates_the_input_and_only_the_added_bytes_are_estimated() -> None:
    p = CachePredictor()
    body = req("task")
    first, seen = p.refine(_est(100_000), body, 300_000, now=0.0)
    assert first == _est(100_000)                                # nothing known yet: as estimated
    p.observe_usage(seen, _usage(10, read=0, write=75_000), now=1.0)
    refined, seen = p.refine(_est(110_000), req("task", "ok", "more"), 330_000, now=2.0)
    # 75,010 billed for the first 300,000 bytes, the 30,000 added at 3 bytes a token
    assert refined.input_tokens == 75_010 + 10_000 and refined.cache_read_tokens == 75_000
    assert refined.max_output_tokens == 32_000 and refined.cache_write_factor == 1.25


def test_calibration_never_raises_the_estimate_nor_reads_a_shrunk_conversation() -> None:
    p = CachePredictor()
    _, seen = p.refine(_est(100_000), req("task"), 300_000, now=0.0)
    p.observe_usage(seen, _usage(120_000, read=0, write=0), now=1.0)    # a denser prompt than estimated
    assert p.refine(_est(110_000), req("task"), 330_000, now=2.0)[0].input_tokens == 110_000
    compacted, _ = p.refine(_est(20_000), req("task"), 60_000, now=3.0)  # smaller: not its prefix
    assert compacted.input_tokens == 20_000 and compacted.cache_read_tokens == 0


def test_an_estimated_usage_forgets_the_conversation_and_no_key_changes_nothing() -> None:
    p = CachePredictor()
    _, seen = p.refine(_est(100_000), req("task"), 300_000, now=0.0)
    p.observe_usage(seen, _usage(10, read=0, write=75_000), now=1.0)
    p.observe_usage(seen, _usage(10, read=0, write=75_000, estimated=True), now=2.0)
    assert p.refine(_est(110_000), req("task"), 330_000, now=3.0)[0] == _est(110_000)
    est, seen = p.refine(_est(5), {"messages": []}, 15, now=0.0)
    assert est == _est(5) and seen.key is None
    p.observe_usage(seen, _usage(10, 0, 0), now=1.0)


def test_a_miss_after_expiry_still_calibrates_but_predicts_no_reads() -> None:
    p = CachePredictor()
    _, seen = p.refine(_est(100_000), req("task"), 300_000, now=0.0)
    p.observe_usage(seen, _usage(10, read=0, write=75_000), now=1.0)
    late, _ = p.refine(_est(110_000), req("task"), 330_000, now=1.0 + 301)
    assert late.input_tokens == 85_010 and late.cache_read_tokens == 0


def test_admission_prices_the_predicted_reads_and_the_calibrated_tier() -> None:
    from guard.supervisor.launch_env import request_cost

    pr = Pricer()
    cold = request_cost(pr, Estimate("claude-sonnet-4-5", 250_000, 32_000, 1.25), False)
    warm = request_cost(pr, Estimate("claude-sonnet-4-5", 150_000, 32_000, 1.25, cache_read_tokens=140_000), False)
    # 250k estimated tokens are past the 200k tier: input and output at its rates
    assert cold.input_usd == pytest.approx(250_000 * 7.5e-6) and cold.usd_per_output == pytest.approx(22.5e-6)
    assert warm.input_usd == pytest.approx(10_000 * 3.75e-6 + 140_000 * 0.3e-6)
    assert warm.usd_per_output == pytest.approx(15e-6)
