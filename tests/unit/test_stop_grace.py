"""How long a halted tool may take to end by itself, by what the tool does after winding down."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from guard.supervisor.ledger_view import PROMPT_GRACE, stop_grace


def _plan(grace: float, source: str = "default") -> SimpleNamespace:
    return SimpleNamespace(grace=grace, sources={"grace": source})


@pytest.mark.parametrize(("graceful", "to_prompt", "source", "expected"), [
    (False, False, "default", 0.0),             # signals only (-p, --bare, any command)
    (True, False, "default", 5.0),              # ends by itself: the whole grace
    (True, True, "default", PROMPT_GRACE),      # back at its prompt: the default would be waited out
    (True, True, "env: GUARD_GRACE", 30.0),     # a grace somebody set is kept
])
def test_stop_grace(graceful: bool, to_prompt: bool, source: str, expected: float) -> None:
    adapter = SimpleNamespace(has_graceful_stop=graceful, returns_to_prompt=to_prompt)
    grace = 30.0 if source != "default" else 5.0
    assert stop_grace(_plan(grace, source), adapter) == expected  # type: ignore[arg-type]
