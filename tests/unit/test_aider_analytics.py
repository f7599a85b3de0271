"""aider's analytics log -> one event per main-model call, steps at the start, interrupted calls."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from guard.adapters.aider_analytics import AnalyticsTracker
from guard.usage import UsageEvent

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "aider"


def merged(events: list[UsageEvent]) -> dict[str, UsageEvent]:
    """What the meter keeps: one merged event per key."""
    out: dict[str, UsageEvent] = {}
    for ev in events:
        out[ev.key] = out[ev.key].merge(ev) if ev.key in out else ev
    return out


def feed(tracker: AnalyticsTracker, records: list[dict]) -> list[UsageEvent]:
    out: list[UsageEvent] = []
    for r in records:
        out += tracker.on_record(r)
    return out


def start() -> dict:
    return {"event": "message_send_starting", "properties": {}}


def send(prompt: int, completion: int, cost: float, total: float = 0.0, model: str = "openai/REDACTED") -> dict:
    return {"event": "message_send", "properties": {
        "main_model": model, "prompt_tokens": prompt, "completion_tokens": completion,
        "total_tokens": prompt + completion, "cost": cost, "total_cost": total or cost}}


@pytest.mark.parametrize("name,prompt,completion,cost", [
    ("analytics-no-stream.jsonl", 12345, 678, 0.0376425),
    ("analytics-stream.jsonl", 2386, 11, 0.0060750000000000005),
    ("analytics-cache-tokens.jsonl", 14345, 678, 0.0288925),
])
def test_real_samples(name: str, prompt: int, completion: int, cost: float) -> None:
    t = AnalyticsTracker(model="openai/gpt-4o", estimated="stream" in name)
    records = [json.loads(line) for line in (FIXTURES / name).read_text().splitlines()]
    events = feed(t, records) + t.finish()
    calls = merged(events)
    assert list(calls) == ["aider:call:1"]
    ev = calls["aider:call:1"]
    assert (ev.input_tokens, ev.output_tokens, ev.cost_usd, ev.steps) == (prompt, completion, cost, 1)
    assert ev.model == "openai/gpt-4o"            # the log redacts it; guard knows it from the args
    assert not ev.interrupted
    assert ev.estimated is ("stream" in name)
    assert t.exited and t.interrupted == []


def test_start_is_a_step_at_once_and_marked_open() -> None:
    t = AnalyticsTracker()
    [ev] = t.on_record(start())
    assert ev.steps == 1 and ev.tokens == 0 and ev.interrupted and ev.cost_usd is None


def test_start_without_send_is_an_interrupted_call_with_what_is_known() -> None:
    t = AnalyticsTracker(model="openai/gpt-4o", estimated=False)
    events = feed(t, [start(), send(10_000, 500, 0.02), start(), start(), send(11_000, 400, 0.021),
                      start(), {"event": "exit", "properties": {"reason": "Control-C"}}])
    calls = merged(events)
    assert list(calls) == [f"aider:call:{i}" for i in (1, 2, 3, 4)]
    assert [calls[k].interrupted for k in calls] == [False, True, False, True]
    assert t.interrupted == [2, 4]
    cut = calls["aider:call:2"]
    # it re-sent about the last counted conversation; its price shared out from that call's cost
    assert cut.input_tokens == 10_000 and cut.output_tokens == 0 and cut.estimated
    assert cut.cost_usd == pytest.approx(0.02 * 10_000 / 10_500)
    assert calls["aider:call:4"].input_tokens == 11_000
    assert sum(c.steps for c in calls.values()) == 4
    assert not calls["aider:call:3"].estimated     # --no-stream: the provider's figures


def test_open_call_at_process_end_is_interrupted() -> None:
    t = AnalyticsTracker()
    feed(t, [start()])
    [ev] = t.finish()
    assert ev.interrupted and ev.key == "aider:call:1"
    assert t.finish() == []


def test_unpriced_model_cost_zero_means_guard_prices_it() -> None:
    t = AnalyticsTracker(model="openai/some-model")
    calls = merged(feed(t, [start(), send(1000, 10, 0.0)]))
    assert calls["aider:call:1"].cost_usd is None and calls["aider:call:1"].input_tokens == 1000


def test_unredacted_model_name_is_used() -> None:
    t = AnalyticsTracker(model=None)
    calls = merged(feed(t, [start(), send(1000, 10, 0.01, model="gpt-4o")]))
    assert calls["aider:call:1"].model == "gpt-4o"


def test_send_without_start_still_counts() -> None:
    t = AnalyticsTracker()
    calls = merged(feed(t, [send(1000, 10, 0.01)]))
    assert calls["aider:call:1"].steps == 1 and calls["aider:call:1"].output_tokens == 10


def test_garbage_properties_are_zero_not_crashes() -> None:
    t = AnalyticsTracker()
    events = feed(t, [start(), {"event": "message_send", "properties": {
        "prompt_tokens": "many", "completion_tokens": True, "cost": -1}}, {"event": 3}, {"properties": []}])
    ev = merged(events)["aider:call:1"]
    assert (ev.input_tokens, ev.output_tokens, ev.cost_usd) == (0, 0, None)
    assert t.live
