"""The marker's rule: a ledger with another identity or fewer rows than remembered lost history."""
from __future__ import annotations

from guard.ledger.marker import Seen, compare, merged


def test_growth_is_fine_and_is_remembered() -> None:
    before = Seen("a", 2, 10, {"r1": 4, "r2": 6})
    now = Seen("a", 3, 12, {"r1": 4, "r2": 6, "r3": 2})
    assert compare(before, now) is None and compare(None, now) is None
    assert merged(before, now) == now


def test_replaced_or_deleted_history_is_named() -> None:
    before = Seen("a", 2, 10, {"r1": 4, "r2": 6})
    assert "not the ledger" in (compare(before, Seen("b", 2, 10, {})) or "")
    assert "events 10 -> 4" in (compare(before, Seen("a", 2, 4, {"r1": 4, "r2": 0})) or "")
    # deleted, then as many new rows written: the counts match, the runs do not
    replaced = compare(before, Seen("a", 2, 10, {"r2": 6, "r9": 4}))
    assert replaced is not None and "run r1 deleted" in replaced


def test_a_lagging_observer_never_lowers_the_marker() -> None:
    ahead = Seen("a", 5, 50, {"r1": 50})
    assert merged(ahead, Seen("a", 4, 40, {"r1": 40})) == ahead
