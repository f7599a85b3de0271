"""Replays of the decision table in guard/governor/decide.py: one test per row, no processes."""
from __future__ import annotations

import signal

import pytest

from guard.governor import RunState, decide
from guard.governor.events import (
    AdapterFailed,
    AdapterHalt,
    Admit,
    Answer,
    Approve,
    AskUser,
    Budget,
    Budgets,
    ClientGone,
    Exited,
    Forward,
    Freeze,
    Grant,
    Hold,
    LedgerUnreachable,
    MarkEstimated,
    Notify,
    PriceUnknown,
    RecordHalt,
    Refuse,
    RequestCost,
    Resumed,
    Settled,
    SharedRefused,
    Signal,
    Spent,
    StopAsked,
    Thaw,
    Tick,
    ToolCall,
    ToolResult,
    WindDown,
)
from guard.governor.offline import offline_figure
from guard.governor.stuck import StuckRule
from guard.usage import Totals

T0 = 1000.0
SIGS = ((int(signal.SIGINT), 3.0), (int(signal.SIGTERM), 3.0), (int(signal.SIGKILL), 0.0))


def state(**kw: object) -> RunState:
    base: dict[str, object] = {"limits": {"usd": 1.0}, "started_at": T0, "on_limit": "stop", "signals": SIGS}
    base.update(kw)
    return RunState(**base)  # type: ignore[arg-type]


def spent(usd: float = 0.0, steps: int = 0, tokens: int = 0, new: int = 1, estimated: bool = False) -> Spent:
    return Spent(Totals(input_tokens=tokens, cost_usd=usd, steps=steps), new, estimated)


def kinds(actions: list[object]) -> list[str]:
    return [type(a).__name__ for a in actions]


# a request of 10k input tokens at $3/M in and $15/M out, asking for 32k output
COST = RequestCost(input_tokens=10_000, input_usd=0.03, usd_per_output=15e-6, max_output=32_000)


def replay(s: RunState, *events: object, at: float = T0 + 1) -> tuple[RunState, list[object]]:
    out: list[object] = []
    for ev in events:
        s, actions = decide(s, ev, at)  # type: ignore[arg-type]
        out += actions
    return s, out


def test_row1_spend_below_every_threshold_decides_nothing() -> None:
    s, out = replay(state(), spent(0.5))
    assert out == [] and s.totals.cost_usd == 0.5 and s.phase == "running"


def test_row2_a_soft_share_gives_one_notice_once() -> None:
    s, out = replay(state(), spent(0.8), spent(0.85), Tick())
    notes = [a for a in out if isinstance(a, Notify)]
    assert len(notes) == 1 and notes[0].soft
    assert notes[0].message == "80% of the $1.00 task ceiling ($0.80 spent)"


def test_row2_ninety_percent_is_not_eighty_nine() -> None:
    _, out = replay(state(soft=(0.9,)), spent(0.9))
    assert out[0].message.startswith("90% of the $1.00")  # type: ignore[attr-defined]


def test_row3_a_ceiling_reached_in_pause_mode_freezes_and_asks() -> None:
    s, out = replay(state(on_limit="pause", interactive=True), spent(1.02, steps=7))
    assert kinds(out) == ["RecordHalt", "Freeze", "AskUser"]
    assert out[0].status == "paused"  # type: ignore[attr-defined]
    assert out[2].message == "halted at step 7: $1.00 task ceiling reached ($1.02 spent)"  # type: ignore[attr-defined]
    assert out[2].raise_kind == "usd" and s.phase == "paused"  # type: ignore[attr-defined]


def test_row4_stop_records_winds_down_and_walks_the_signals() -> None:
    s, out = replay(state(graceful=5.0), spent(1.0))
    assert kinds(out) == ["RecordHalt", "WindDown"]   # the grace comes first: no signal yet
    assert s.halted and s.stop is not None and s.stop.deadline == T0 + 1 + 5.0
    s, out = replay(s, Tick(), at=T0 + 6.1)
    assert out == [Signal(int(signal.SIGINT))]


def test_row5_kill_sends_sigkill_at_once() -> None:
    _, out = replay(state(on_limit="kill"), spent(1.5))
    assert kinds(out) == ["RecordHalt", "WindDown", "Signal"] and out[2] == Signal(int(signal.SIGKILL))


def test_row6_each_stop_step_fires_at_its_deadline_only() -> None:
    s, _ = replay(state(), spent(1.0))      # SIGINT now, then SIGTERM 3 s later
    s, out = replay(s, Tick(), at=T0 + 2)
    assert out == []
    s, out = replay(s, Tick(), at=T0 + 4.1)
    assert out == [Signal(int(signal.SIGTERM))]


def test_row7_new_calls_well_after_the_stop_escalate_at_once() -> None:
    s, _ = replay(state(), spent(1.0))
    s, out = replay(s, spent(1.1, new=0), at=T0 + 3)          # a second source's copy: not new
    assert out == []
    s, out = replay(s, spent(1.2, new=1), at=T0 + 1.5)        # a new call, half a second on: in flight
    assert out == []
    _, out = replay(s, spent(1.3, new=1), at=T0 + 2.5)
    assert out == [Signal(int(signal.SIGTERM))]


def test_row8_a_request_that_fits_is_forwarded_as_asked() -> None:
    s, out = replay(state(limits={"usd": 10.0}), Admit("r1", COST))
    assert out == [Forward("r1")]
    assert s.reserved["r1"].usd == pytest.approx(0.03 + 32_000 * 15e-6)


def test_row9_a_request_that_fits_above_the_floor_is_lowered() -> None:
    # $0.30 left: (0.30 - 0.03) / 15e-6 = 18,000 output tokens fit
    s, out = replay(state(limits={"usd": 0.30}), Admit("r1", COST))
    fwd = out[0]
    assert isinstance(fwd, Forward) and fwd.max_output == 18_000 and fwd.lowered_from == 32_000
    assert s.reserved["r1"].usd <= 0.30 + 1e-9


def test_row9_thinking_budget_stays_below_the_lowered_allowance_and_at_least_1024() -> None:
    cost = RequestCost(10_000, 0.03, 15e-6, 32_000, thinking_budget=30_000)
    _, out = replay(state(limits={"usd": 0.30}), Admit("r1", cost))
    assert out[0].max_output == 18_000 and out[0].thinking_budget == 17_999  # type: ignore[attr-defined]


def test_row9_concurrent_requests_share_what_is_left() -> None:
    s, out = replay(state(limits={"usd": 0.60}), Admit("a", COST), Admit("b", COST))
    a, b = out[:2]
    assert a == Forward("a")                           # 0.51 of 0.60
    assert isinstance(b, Refuse) and "needs at least $0.09" in b.message
    assert "$0.51 in flight" in b.message


def test_row10_below_the_floor_refuses_and_halts_with_true_words() -> None:
    s, _ = replay(state(limits={"usd": 0.50}), spent(0.47, steps=3))
    s, out = replay(s, Admit("r1", COST))
    assert kinds(out) == ["Refuse", "RecordHalt", "WindDown", "Signal"]
    assert out[0].message == ("halted at step 3: $0.50 task ceiling: $0.47 spent, "  # type: ignore[attr-defined]
                              "the next request needs at least $0.09")
    assert s.halted


def test_row11_below_the_floor_in_pause_mode_holds_the_request() -> None:
    s, out = replay(state(limits={"usd": 0.05}, on_limit="pause"), Admit("r1", COST))
    assert kinds(out) == ["Hold", "RecordHalt", "Freeze", "AskUser"]
    assert "r1" in s.held and s.phase == "paused"


def test_row12_requests_during_a_pause_join_it() -> None:
    s, _ = replay(state(limits={"usd": 0.05}, on_limit="pause"), Admit("r1", COST))
    s, out = replay(s, Admit("r2", COST))
    assert out == [Hold("r2")] and set(s.held) == {"r1", "r2"}


def test_row13_requests_after_a_halt_are_refused() -> None:
    s, _ = replay(state(), spent(1.0))
    _, out = replay(s, Admit("r1", COST))
    assert kinds(out) == ["Refuse"] and "task ceiling reached" in out[0].message  # type: ignore[attr-defined]


def test_row14_raise_forwards_the_held_request_and_thaws() -> None:
    s, _ = replay(state(limits={"usd": 0.05}, on_limit="pause"), Admit("r1", COST))
    s, out = replay(s, Answer("raise", "prompt", {"usd": 5.0}))
    assert kinds(out) == ["Approve", "Resumed", "Thaw", "Forward"]
    assert out[0] == Approve("usd", 5.0, "prompt")
    assert s.limits["usd"] == pytest.approx(5.05) and s.phase == "running" and not s.held


def test_row14_continue_lifts_the_ceiling_for_this_run() -> None:
    s, _ = replay(state(on_limit="pause"), spent(1.0))
    s, out = replay(s, Answer("continue", "guard resume"), spent(3.0))
    assert "usd" in s.lifted and s.halt is None
    assert Approve("usd", None, "guard resume", "continue past the ceiling for this run") in out


def test_row14_a_raise_too_small_pauses_again_at_once() -> None:
    s, _ = replay(state(on_limit="pause"), spent(1.5))
    s, out = replay(s, Answer("raise", "prompt", {"usd": 0.2}))
    assert kinds(out)[-3:] == ["RecordHalt", "Freeze", "AskUser"] and s.phase == "paused"


def test_row14_a_period_ceiling_is_raised_by_a_grant() -> None:
    b = Budget("developer_usd", "developer:alice", "day", 10.0, 9.5, T0 - 100, T0 + 1e4)
    s, _ = replay(state(limits={}, on_limit="pause", budgets=(b,)), spent(0.6))
    assert s.halt is not None and s.halt.ceiling == "developer_usd"
    s, out = replay(s, Answer("raise", "prompt", {"usd": 5.0}))
    assert Grant("developer:alice", "day", 5.0, "prompt", "raised while the run was paused") in out
    assert s.phase == "running" and s.budgets[0].limit == 15.0


def test_row15_stop_at_the_pause_refuses_held_requests_and_signals_without_waiting() -> None:
    s, _ = replay(state(limits={"usd": 0.05}, on_limit="pause", graceful=5.0), Admit("r1", COST))
    s, out = replay(s, Answer("stop", "prompt"))
    assert kinds(out) == ["RecordHalt", "Thaw", "Refuse", "WindDown", "Signal"]
    assert out[0].status == "halted" and out[4] == Signal(int(signal.SIGINT))  # type: ignore[attr-defined]


def test_row16_guard_stop_on_a_running_run() -> None:
    s, out = replay(state(graceful=5.0), StopAsked("guard stop"))
    assert kinds(out) == ["RecordHalt", "WindDown", "Signal"] and s.halt.ceiling == "manual"  # type: ignore[union-attr]


def test_row17_adapter_failure_halts_the_configured_way() -> None:
    s, out = replay(state(on_limit="pause"), AdapterFailed("the claude adapter failed (ValueError: x)"))
    assert s.halt.ceiling == "adapter_error" and kinds(out)[:2] == ["RecordHalt", "Freeze"]  # type: ignore[union-attr]


def test_row18_a_stuck_loop_halts() -> None:
    s, out = replay(state(), AdapterHalt("stuck_loop", "stuck loop: Bash `make` failed 3 times"))
    assert s.halt.ceiling == "stuck_loop" and s.halted  # type: ignore[union-attr]


def test_row19_unknown_price_under_max_is_said_once_per_model() -> None:
    _, out = replay(state(), PriceUnknown("gpt-9", "max:o1-pro"), PriceUnknown("gpt-9", "max:o1-pro"))
    assert kinds(out) == ["Notify"] and "gpt-9" in out[0].message  # type: ignore[attr-defined]


def test_row20_unknown_price_under_refuse_stops() -> None:
    s, out = replay(state(unknown_price="refuse", on_limit="pause"), PriceUnknown("gpt-9", "none"))
    assert s.halt.ceiling == "unknown_price" and s.halt.action == "stop" and s.halted  # type: ignore[union-attr]


def test_row21_another_machine_took_the_shared_budget() -> None:
    b = Budget("developer_usd", "developer:alice", "day", 10.0, 2.0, T0 - 100, T0 + 1e4)
    s, out = replay(state(limits={}, budgets=(b,)), Admit("r1", COST))
    assert isinstance(out[0], Forward) and out[0].shared_usd > 0
    s, out = replay(s, SharedRefused("r1", "developer_usd: $9.90 spent + ... would pass the $10.00 limit"))
    assert kinds(out)[:2] == ["Refuse", "RecordHalt"] and not s.reserved


def test_row22_a_held_request_whose_client_left_is_dropped() -> None:
    s, _ = replay(state(limits={"usd": 0.05}, on_limit="pause"), Admit("r1", COST))
    s, out = replay(s, ClientGone("r1"), Answer("raise", "prompt", {"usd": 5.0}))
    assert "Forward" not in kinds(out) and not s.held


def test_row23_exit_at_the_ceiling_is_recorded_as_a_halt() -> None:
    s = state(limits={"steps": 3.0})
    s.totals = Totals(steps=3)
    s, out = replay(s, Exited(0))
    assert kinds(out) == ["RecordHalt"] and s.halted and s.halt.action == "stop"  # type: ignore[union-attr]


def test_row24_estimated_usage_marks_the_run_once() -> None:
    _, out = replay(state(), spent(0.1, estimated=True), spent(0.2, estimated=True))
    assert out.count(MarkEstimated()) == 1


def test_row25_others_spend_reaches_the_period_ceiling() -> None:
    b = Budget("team_usd", "team:core", "week", 100.0, 60.0, T0 - 100, T0 + 1e4, (0.75,), "resets in 2d")
    s, out = replay(state(limits={}), Budgets((b,)), spent(16.0))
    assert kinds(out) == ["Notify"]
    assert out[0].shared == ("team:core", "week", T0 - 100, 0.75)  # type: ignore[attr-defined]
    assert out[0].message == "76% of the $100.00 team ceiling ($76.00 spent this week) for team:core; resets in 2d"  # type: ignore[attr-defined]
    s, out = replay(s, Budgets((Budget("team_usd", "team:core", "week", 100.0, 85.0, T0 - 100, T0 + 1e4),)))
    assert kinds(out)[:1] == ["RecordHalt"] and s.halt.ceiling == "team_usd"  # type: ignore[union-attr]


def test_steps_on_the_wire_refuse_once_the_ceiling_is_reached() -> None:
    step = RequestCost(1000, 0.003, 15e-6, 4096, step=True)
    s, out = replay(state(limits={"steps": 2.0}), Admit("a", step), Admit("b", step), Admit("c", step))
    assert kinds(out)[:3] == ["Forward", "Forward", "Refuse"]
    assert out[2].message == "halted at step 0: 2 steps task ceiling reached (2 steps taken)"  # type: ignore[attr-defined]


def test_settled_releases_the_reservation() -> None:
    s, _ = replay(state(limits={"usd": 10.0}), Admit("a", COST))
    s, _ = replay(s, Settled("a"))
    assert not s.reserved


def test_the_time_ceiling_is_a_deadline_for_the_host() -> None:
    s = state(limits={"time": 60.0})
    assert s.next_deadline(T0 + 10) == pytest.approx(T0 + 60)
    _, out = replay(s, Tick(), at=T0 + 60.5)
    assert kinds(out)[0] == "RecordHalt"


def test_decide_never_changes_the_state_it_was_given() -> None:
    s = state(limits={"usd": 0.05}, on_limit="pause")
    before = (dict(s.limits), dict(s.held), s.phase, s.halt)
    decide(s, Admit("r1", COST), T0)
    assert (dict(s.limits), dict(s.held), s.phase, s.halt) == before


def test_unused_names_are_exported() -> None:
    # every action type the table names exists
    assert {Hold, Refuse, Forward, Freeze, Thaw, AskUser, WindDown, RecordHalt, Resumed, Approve}


def test_a_raise_for_a_running_run_counts_for_the_task() -> None:
    s, out = replay(state(), Answer("raise", "guard resume", {"usd": 2.0}))
    assert kinds(out) == ["Approve", "Resumed"] and s.limits["usd"] == 3.0


def test_guard_stop_during_a_pause_stops_without_waiting() -> None:
    s, _ = replay(state(on_limit="pause", graceful=5.0), spent(1.0))
    s, out = replay(s, StopAsked("guard stop"))
    assert kinds(out) == ["RecordHalt", "Thaw", "WindDown", "Signal"] and s.halted


def test_raising_a_ceiling_that_had_no_limit_counts_from_what_was_used() -> None:
    s, _ = replay(state(on_limit="pause"), AdapterHalt("stuck_loop", "stuck"))
    s, out = replay(s, Answer("raise", "prompt", {"steps": 10.0}))
    assert s.limits["steps"] == 10.0 and s.phase == "running"


def test_a_held_request_waits_again_when_the_raise_is_too_small_for_it() -> None:
    s, _ = replay(state(limits={"usd": 0.05}, on_limit="pause"), Admit("r1", COST), Admit("r2", COST))
    s, out = replay(s, Answer("raise", "prompt", {"usd": 0.01}))
    assert kinds(out)[-1] == "Hold" and set(s.held) == {"r1", "r2"} and s.phase == "paused"


def test_a_shared_refusal_after_the_halt_is_just_a_refusal() -> None:
    s, _ = replay(state(), spent(1.0))
    _, out = replay(s, SharedRefused("x", "gone"))
    assert kinds(out) == ["Refuse"]


def test_a_shared_refusal_in_pause_mode_holds_the_request() -> None:
    b = Budget("developer_usd", "developer:alice", "day", 10.0, 2.0, T0 - 100, T0 + 1e4)
    s, _ = replay(state(limits={}, budgets=(b,), on_limit="pause"), Admit("r1", COST))
    s, out = replay(s, SharedRefused("r1", "developer_usd: no room"))
    assert kinds(out)[:2] == ["Hold", "RecordHalt"] and "r1" in s.held


def test_an_exhausted_stop_sequence_does_nothing_more() -> None:
    s, _ = replay(state(on_limit="kill"), spent(1.0))
    s, out = replay(s, Tick(), at=T0 + 10)
    _, out = replay(s, Tick(), at=T0 + 20)
    assert out == [] and s.stop is not None and s.stop.done


def test_a_second_failure_after_a_halt_changes_nothing() -> None:
    s, _ = replay(state(), spent(1.0))
    _, out = replay(s, AdapterFailed("x"), AdapterHalt("stuck_loop", "y"), PriceUnknown("m", "b"), Exited(0))
    assert [k for k in kinds(out) if k != "Notify"] == []


def test_a_refusal_gives_the_agent_its_grace_to_end_by_itself_before_signals() -> None:
    s, out = replay(state(limits={"usd": 0.05}, refusal_grace=2.0), Admit("r1", COST))
    assert kinds(out) == ["Refuse", "RecordHalt", "WindDown"]     # no signal yet
    _, out = replay(s, Tick(), at=T0 + 3.1)
    assert out == [Signal(int(signal.SIGINT))]


# -- rows 26-28: stuck loops, from the tool calls an adapter reports ----------------------------


def call(cid: str, cmd: str, stream: str = "s/main", command: bool = True) -> ToolCall:
    return ToolCall(stream, cid, f"sig:{cmd}", f"Bash({cmd})", command)


def looping(**kw: object) -> RunState:
    return state(stuck=StuckRule(**kw))  # type: ignore[arg-type]


def test_row26_the_same_call_repeat_times_in_a_row_halts_once() -> None:
    s, out = replay(looping(repeat=5, failing=3), *(call(f"t{i}", "echo hi") for i in range(4)))
    assert out == [] and s.halt is None
    s, out = replay(s, call("t4", "echo hi"))
    assert kinds(out)[:2] == ["RecordHalt", "WindDown"] and s.halt.ceiling == "stuck_loop"  # type: ignore[union-attr]
    assert "repeated 5 times in a row: Bash(echo hi)" in s.halt.message  # type: ignore[union-attr]
    _, out = replay(s, call("t5", "echo hi"))
    assert out == []


def test_row26_a_stuck_loop_pauses_in_pause_mode() -> None:
    s, out = replay(state(stuck=StuckRule(repeat=2), on_limit="pause"), call("a", "x"), call("b", "x"))
    assert kinds(out) == ["RecordHalt", "Freeze", "AskUser"] and s.phase == "paused"


def test_row26_a_different_call_resets_the_run_and_an_id_counts_once() -> None:
    calls = [call(f"t{i}", cmd) for i, cmd in enumerate(["a", "a", "b", "a", "a", "b", "b"])]
    _, out = replay(looping(repeat=3, failing=99), *calls, call("t6", "b"))
    assert out == []                                   # t6 again: the same response seen twice


def test_row26_interleaved_conversations_are_counted_apart() -> None:
    s = looping(repeat=3, failing=99)
    for i in range(2):
        s, out = replay(s, call(f"m{i}", "ls"), call(f"s{i}", "ls", "s/a1"), call(f"x{i}", "pwd", "s/a2"))
        assert out == []
    s, out = replay(s, call("s2", "ls", "s/a1"))
    assert s.halt is not None and s.halt.ceiling == "stuck_loop"


def test_row27_the_same_command_failing_halts() -> None:
    s = looping(repeat=99, failing=3)
    for i, cmd in enumerate(["make", "ls", "make", "ls"]):
        s, out = replay(s, call(f"t{i}", cmd), ToolResult(f"t{i}", cmd == "make"))
        assert out == []
    s, out = replay(s, call("t9", "make"), ToolResult("t9", True))
    assert s.halt is not None and "failed 3 times: Bash(make)" in s.halt.message


def test_row27_a_success_resets_the_failures_and_other_tools_do_not_count() -> None:
    s = looping(repeat=99, failing=2)
    s, out = replay(s, call("t1", "make"), ToolResult("t1", True), call("t2", "make"), ToolResult("t2", False),
                    call("t3", "make"), ToolResult("t3", True), ToolResult("unknown", True))
    s, out2 = replay(s, call("r1", "f", command=False), ToolResult("r1", True),
                     call("r2", "f", command=False), ToolResult("r2", True))
    assert out == [] and out2 == [] and s.halt is None


def test_row28_stuck_loop_off_or_a_halt_in_force_counts_nothing() -> None:
    _, out = replay(state(), *(call(f"t{i}", "x") for i in range(9)))
    assert out == []
    s, _ = replay(state(stuck=StuckRule(repeat=2), on_limit="pause"), spent(1.0))   # paused at the ceiling
    s, out = replay(s, call("a", "x"), call("b", "x"), ToolResult("b", True))
    assert out == [] and s.halt is not None and s.halt.ceiling == "usd" and not s.loops.seen


def test_decide_leaves_the_given_loops_alone() -> None:
    s0 = looping(repeat=3)
    s1, _ = replay(s0, call("a", "x"))
    assert not s0.loops.seen and s1.loops.seen == {"a"}


def test_stuck_rule_from_a_tools_options() -> None:
    assert StuckRule.from_options({}) == StuckRule(5, 3)
    assert StuckRule.from_options({"stuck_loop": {"repeat": 8}}) == StuckRule(8, 3)
    assert StuckRule.from_options({"stuck_loop": True}) == StuckRule()
    assert StuckRule.from_options({"stuck_loop": False}) is None
    assert StuckRule.from_options({"stuck_loop": {"enabled": False}}) is None


# -- row 29: the shared ledger unreachable, and the `offline` rule behind it ----------------------


def test_row29_an_unreachable_ledger_halts_the_configured_way_once() -> None:
    words = "ledger pg is unreachable and the offline policy is refuse: no new spend is admitted"
    s, out = replay(state(on_limit="pause"), LedgerUnreachable(words))
    assert kinds(out) == ["RecordHalt", "Freeze", "AskUser"]
    assert s.halt is not None and s.halt.ceiling == "ledger_offline" and words in s.halt.message
    _, out = replay(s, LedgerUnreachable(words))
    assert out == []


KNOWN, LOCAL = Totals(cost_usd=3.0, calls=3), Totals(cost_usd=0.5, calls=1)


@pytest.mark.parametrize(("policy", "known", "shared", "figure"), [
    ("last-known", KNOWN, True, 3.5),       # the last shared figure plus this machine's since
    ("allow", KNOWN, True, 3.5),
    ("allow", None, True, 0.5),             # never read here: counts 0 beside this machine's
    ("last-known", None, True, "never read"),   # fail closed
    ("refuse", KNOWN, True, "policy is refuse"),
    ("refuse", None, False, 0.5),           # a task's own figure: this machine's
    ("refuse", KNOWN, False, 3.5),
])
def test_the_offline_rule(policy: str, known: Totals | None, shared: bool, figure: float | str) -> None:
    got = offline_figure(policy, known, LOCAL, shared)
    if isinstance(figure, str):
        assert isinstance(got, str) and figure in got
    else:
        assert not isinstance(got, str) and got.cost_usd == figure
