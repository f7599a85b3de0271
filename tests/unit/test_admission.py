"""The output allowance each kind of ceiling leaves, and who may start at all."""
from __future__ import annotations

from guard.governor import RunState
from guard.governor.admission import fit
from guard.governor.ceilings import Ceiling, format_amount
from guard.governor.events import Budget, RequestCost
from guard.governor.start import refusal
from guard.usage import Totals

COST = RequestCost(input_tokens=10_000, input_usd=0.03, usd_per_output=15e-6, max_output=32_000)


def test_a_token_ceiling_lowers_the_allowance_to_what_is_left_after_the_input() -> None:
    f = fit([Ceiling("tokens", 30_000, 0)], COST, 4096)
    assert f.fits and f.max_output == 20_000


def test_a_free_model_is_bounded_by_tokens_only() -> None:
    free = RequestCost(10_000, 0.0, 0.0, 32_000)
    assert fit([Ceiling("usd", 1.0, 0.5)], free, 4096).max_output is None
    assert not fit([Ceiling("usd", 1.0, 1.0 + 1e-3)], free, 4096).fits


def test_a_request_asking_less_than_the_floor_needs_only_what_it_asks() -> None:
    small = RequestCost(1000, 0.003, 15e-6, 512)
    assert fit([Ceiling("usd", 0.0115, 0.0)], small, 4096).fits
    f = fit([Ceiling("usd", 0.005, 0.0)], small, 4096)
    assert not f.fits and f.message == "$0.0050 task ceiling: $0.00 spent, the next request needs at least $0.01"


def test_tokens_below_the_floor_say_what_the_next_request_needs() -> None:
    f = fit([Ceiling("tokens", 12_000, 0)], COST, 4096)
    assert f.message == "12k tokens task ceiling: 0 tokens used, the next request needs at least 14.1k tokens"


def test_time_and_steps_block_without_lowering() -> None:
    assert not fit([Ceiling("time", 60, 61)], COST, 4096).fits
    assert fit([Ceiling("steps", 3, 2)], COST, 4096).fits            # Claude Code's steps come from responses
    assert not fit([Ceiling("steps", 3, 3)], COST, 4096).fits


def test_formats() -> None:
    assert format_amount("steps", 1) == "1 step" and format_amount("usd", 0.004) == "$0.0040"
    assert Ceiling("developer_usd", 10, 5, "developer").kind == "usd"
    assert Ceiling("usd", 0, 0).fraction() == float("inf")


def start_state(**kw: object) -> RunState:
    return RunState(**{"limits": {"usd": 1.0}, "started_at": 0.0, **kw})  # type: ignore[arg-type]


def test_a_spent_period_ceiling_refuses_to_start_and_says_when_it_resets() -> None:
    b = Budget("developer_usd", "developer:alice", "day", 10.0, 10.0, 0, 86400, reset_words="resets in 3h")
    halt = refusal(start_state(budgets=(b,)), 1.0, None, {})
    assert halt is not None and halt.message == (
        "refused: developer_usd: developer alice has used $10.00 of $10.00 this day; resets in 3h")


def test_a_reached_task_ceiling_refuses_with_the_resume_command() -> None:
    halt = refusal(start_state(prior=Totals(cost_usd=1.2)), 1.0, "fix-login", {"usd": ("abc123", 1.0)})
    assert halt is not None and "guard resume abc123 --raise-usd AMOUNT" in halt.message
    assert halt.message.startswith("refused: $1.00 task ceiling reached ($1.20 spent)")


def test_a_task_halted_below_its_ceiling_starts_again_once_the_ceiling_is_higher() -> None:
    # halted by the proxy at $0.50 with $0.27 spent (the next request did not fit)
    s = start_state(limits={"usd": 0.5}, prior=Totals(cost_usd=0.27))
    held = refusal(s, 1.0, "t", {"usd": ("r1", 0.5)})
    assert held is not None and "halted this task" in held.message
    assert refusal(start_state(limits={"usd": 2.0}, prior=Totals(cost_usd=0.27)), 1.0, "t", {"usd": ("r1", 0.5)}) is None


def test_nothing_spent_starts() -> None:
    assert refusal(start_state(), 1.0, None, {}) is None
