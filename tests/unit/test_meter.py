"""The meter: merges by key across its window and the ledger, writes each key once per batch,
and keeps a bounded amount of state however many calls a run has."""
from __future__ import annotations

from pathlib import Path

import pytest

from guard.ledger.records import RunRecord
from guard.ledger.sqlite import SqliteLedger
from guard.meter import Meter, SeenKeys
from guard.pricing import Pricer
from guard.sink import Sink
from guard.usage import UsageEvent


def ev(key: str, out: int = 1, cost: float | None = 0.001) -> UsageEvent:
    return UsageEvent(key, "usage_file", model="claude-sonnet-4-6", input_tokens=10, output_tokens=out,
                      cost_usd=cost, steps=1)


@pytest.fixture
def ledger(tmp_path: Path) -> SqliteLedger:
    led = SqliteLedger(tmp_path / "ledger.db")
    led.create_run(RunRecord(id="r", tool="run", task="t", developer="d"))
    return led


def test_a_key_outside_the_window_merges_with_its_ledger_row(ledger: SqliteLedger) -> None:
    m = Meter("r", ledger, Pricer(), window=4)
    m.record_batch([ev(f"k{i}") for i in range(10)])
    assert m.lookups == 0   # new keys: the filter answers, the ledger is not asked
    got = m.record_batch([ev("k0", out=500, cost=0.5)])   # long out of the window
    assert not got[0].new and m.lookups == 1
    assert m.totals.calls == 10 and m.totals.cost_usd == pytest.approx(0.009 + 0.5)
    assert ledger.run_totals("r").calls == 10
    assert ledger.run_totals("r").cost_usd == pytest.approx(m.totals.cost_usd)


def test_a_key_twice_in_one_batch_is_one_call(ledger: SqliteLedger) -> None:
    m = Meter("r", ledger, Pricer())
    got = m.record_batch([ev("a", out=1), ev("b"), ev("a", out=7)])
    assert [r.new for r in got] == [True, True, False]
    assert m.totals.calls == 2 and ledger.run_totals("r").calls == 2
    assert ledger.run_event("r", "a")[0].output_tokens == 7   # type: ignore[index]


def test_replayed_batch_counts_nothing_twice(ledger: SqliteLedger) -> None:
    m = Meter("r", ledger, Pricer(), window=2)
    batch = [ev(f"k{i}") for i in range(6)]
    m.record_batch(batch)
    m.record_batch(batch)
    assert m.totals.calls == 6 and ledger.run_totals("r").calls == 6
    assert m.totals.cost_usd == pytest.approx(0.006)


def test_seen_keys_has_no_false_negatives_and_few_false_positives() -> None:
    seen = SeenKeys(bits=1 << 16, hashes=4)
    for i in range(2000):
        seen.add(f"in{i}")
    assert all(seen.maybe(f"in{i}") for i in range(2000))
    assert sum(seen.maybe(f"out{i}") for i in range(2000)) < 40   # ~0.2% expected


def test_sink_writes_one_wake_byte_per_take_and_never_misses_one() -> None:
    import os
    import select

    s = Sink()
    for i in range(100):
        s.emit(ev(f"k{i}"))
    assert len(os.read(s.read_fd, 4096)) == 1
    assert len(s.take().events) == 100
    s.emit(ev("late"))   # after a take: the loop must be woken again
    assert select.select([s.read_fd], [], [], 0)[0] == [s.read_fd]
    assert [e.key for e in s.take().events] == ["late"]
    s.close()


def test_an_adapter_thread_waits_while_the_loop_has_a_full_mailbox() -> None:
    import threading

    from guard.sink import MAX_PENDING

    s = Sink()
    done = threading.Event()

    def reader() -> None:
        for i in range(MAX_PENDING + 10):
            s.emit(ev(f"k{i}"))
        done.set()

    t = threading.Thread(target=reader)
    t.start()
    first = []
    while not first:   # the reader fills the mailbox, then waits for a take
        first = s.take().events if len(s.events) >= MAX_PENDING else []
    t.join(timeout=10)
    rest = s.take().events
    assert done.is_set() and len(first) >= MAX_PENDING   # (more only if the take came late)
    assert len({e.key for e in first + rest}) == len(first + rest) == MAX_PENDING + 10
    s.close()


def test_the_loop_thread_itself_never_waits() -> None:
    from guard.sink import MAX_PENDING

    s = Sink()
    for i in range(MAX_PENDING + 10):
        s.emit(ev(f"k{i}"))
    assert len(s.take().events) == MAX_PENDING + 10
    s.close()
