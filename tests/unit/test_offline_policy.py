"""The offline policy: what a ceiling counts while the shared ledger is unreachable."""
from __future__ import annotations

import pytest

from guard.errors import LedgerError
from guard.ledger.offline import LastKnown, LedgerOffline, offline_spend, policy_named
from guard.usage import Totals

KNOWN = LastKnown(Totals(cost_usd=3.0, calls=3), fetched_at=100.0)
LOCAL = Totals(cost_usd=0.5, calls=1)


def test_last_known_adds_this_machines_spend() -> None:
    assert offline_spend("last-known", KNOWN, LOCAL).cost_usd == 3.5
    assert offline_spend("allow", KNOWN, LOCAL).calls == 4


def test_unknown_shared_figure_fails_closed_unless_allowed() -> None:
    with pytest.raises(LedgerOffline, match="never read"):
        offline_spend("last-known", None, LOCAL, "pg")
    assert offline_spend("allow", None, LOCAL).cost_usd == 0.5


def test_refuse_admits_no_shared_spend_but_a_task_counts_its_own() -> None:
    with pytest.raises(LedgerOffline, match="policy is refuse"):
        offline_spend("refuse", KNOWN, LOCAL)
    assert offline_spend("refuse", None, LOCAL, shared=False).cost_usd == 0.5
    assert offline_spend("last-known", KNOWN, LOCAL, shared=False).cost_usd == 3.5


def test_age_and_policy_names() -> None:
    assert KNOWN.age(130.0) == 30.0 and KNOWN.age(50.0) == 0.0
    assert policy_named("closed") == "refuse" and policy_named("open") == "allow"
    with pytest.raises(LedgerError, match="not one of"):
        policy_named("sometimes")
