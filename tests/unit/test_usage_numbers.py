"""Numbers decide money: what a usage record's counts and costs are read as."""
from pathlib import Path

import pytest

from guard.adapters.command import LineKeys, usage_file_event
from guard.pricing import Pricer
from guard.tail import LineRef
from guard.usage import MAX_COUNT, UNREADABLE_FLOOR, Largest, Unreadable, UsageEvent, parse_count


def ref(n: int = 1, line: bytes = b"d") -> LineRef:
    return LineRef(Path("usage.jsonl"), 0, n, line)


def event(obj: dict, largest: Largest = Largest()):
    return usage_file_event(obj, ref(), LineKeys(), largest)


@pytest.mark.parametrize("raw, want", [
    (12, 12), ("900000", 900000), (" 42 ", 42), ("1e3", 1000), (12.2, 13), ("0", 0), (None, 0),
    (1e20, MAX_COUNT), ("1e999", MAX_COUNT), (10**400, MAX_COUNT), (float("inf"), MAX_COUNT),
])
def test_counts_follow_the_json_number_grammar(raw, want):
    assert parse_count(raw)[0] == want


@pytest.mark.parametrize("raw", [-1, "-5", float("nan"), "NaN", "Infinity", "0x10", "１２", "٣",
                                 "12abc", "", True, [1], {"n": 1}, "1_000", "+5", "01"])
def test_what_is_no_json_number_is_unreadable(raw):
    with pytest.raises(Unreadable):
        parse_count(raw)


def test_a_numeric_string_is_counted_and_exact():
    ev, problems = event({"input_tokens": "900000", "output_tokens": "10"})
    assert (ev.input_tokens, ev.output_tokens, problems, ev.estimated) == (900000, 10, [], False)


@pytest.mark.parametrize("bad", [-5, float("nan"), "lots", True])
def test_an_unreadable_count_counts_as_the_largest_call_so_far(bad):
    largest = Largest(input_tokens=250_000, output_tokens=3)
    ev, problems = event({"input_tokens": bad, "output_tokens": bad}, largest)
    assert ev.input_tokens == 250_000          # the run's largest call
    assert ev.output_tokens == UNREADABLE_FLOOR["output_tokens"]  # never below the floor
    assert ev.estimated and len(problems) == 2 and "input_tokens" in problems[0]


def test_the_first_call_unreadable_is_never_zero():
    ev, problems = event({"input_tokens": -1, "output_tokens": 5})
    assert ev.input_tokens == UNREADABLE_FLOOR["input_tokens"] > 0 and problems


def test_largest_tracks_each_field():
    big = Largest().observe(UsageEvent("a", "s", input_tokens=10, output_tokens=500))
    big = big.observe(UsageEvent("b", "s", input_tokens=700, output_tokens=1))
    assert (big.input_tokens, big.output_tokens) == (700, 500)


def test_counts_above_a_billion_are_capped_and_flagged():
    ev, problems = event({"input_tokens": 10**30, "output_tokens": 1e20})
    assert (ev.input_tokens, ev.output_tokens) == (MAX_COUNT, MAX_COUNT) and ev.estimated and problems


def test_a_bad_cost_is_replaced_by_the_price_of_the_tokens():
    ev, problems = event({"input_tokens": 10, "cost_usd": -3})
    assert ev.cost_usd is None and ev.estimated and "cost_usd" in problems[0]
    ev, problems = event({"input_tokens": 10, "cost_usd": "0.25"})
    assert ev.cost_usd == 0.25 and not problems


def test_a_stated_cost_is_never_below_the_price_of_its_tokens():
    pricer = Pricer()
    ev, _ = event({"input_tokens": 1_000_000, "output_tokens": 0, "model": "claude-sonnet-4-6",
                   "cost_usd": 0.0001})
    tokens_only = pricer.price(UsageEvent("t", "x", model="claude-sonnet-4-6", input_tokens=1_000_000))
    assert tokens_only.usd > 1 and pricer.price(ev).usd == pytest.approx(tokens_only.usd)
    dear, _ = event({"input_tokens": 10, "model": "claude-sonnet-4-6", "cost_usd": 7.5})
    assert pricer.price(dear).usd == 7.5


def test_keys_and_models_any_ledger_can_store():
    ev = UsageEvent("abc\u0000def", "s", model="m\u0000\ud800")
    assert "\u0000" not in ev.key and ev.key != UsageEvent("abc\ufffddef", "s").key
    assert ev.model == "m\ufffd\ufffd"
    assert len(UsageEvent("x" * 10_000, "s").key) < 100
    assert UsageEvent("plain-id-1", "s").key == "plain-id-1"


def test_lines_without_id_keep_their_key_when_read_again():
    keys = LineKeys()
    first = [keys.key(LineRef(Path("u"), 0, i, d)) for i, d in enumerate(b"a b a b".split())]
    assert len(set(first)) == 4  # equal lines are distinct calls
    again = [keys.key(LineRef(Path("u"), 1, i, d)) for i, d in enumerate(b"a b a b".split())]
    assert again == first        # a re-read version of the file yields the same keys


def _write_hostile_event(url: str, home: Path) -> tuple:
    from guard.ledger import open_ledger
    from guard.ledger.records import RunRecord

    ev, _ = event({"input_tokens": 10**30, "output_tokens": "1e400", "id": "x\u0000y\ud800"})
    ledger = open_ledger(url, home)
    try:
        ledger.create_run(RunRecord(id="r1", tool="run", task="t", developer="d", started_at=1.0))
        ledger.upsert_event("r1", ev, 1e12, True)
        [(stored, cost, _known)] = ledger.run_events("r1")
        return stored.input_tokens, stored.output_tokens, cost, stored.key == ev.key
    finally:
        ledger.close()


def test_a_huge_hostile_event_is_stored_in_sqlite(tmp_path):
    assert _write_hostile_event(f"sqlite:///{tmp_path / 'l.db'}", tmp_path) == (MAX_COUNT, MAX_COUNT, 1e12, True)


def test_a_huge_hostile_event_is_stored_in_postgres(tmp_path):
    from tests.pgtest import pg_schema

    with pg_schema() as url:
        assert _write_hostile_event(url, tmp_path) == (MAX_COUNT, MAX_COUNT, 1e12, True)
