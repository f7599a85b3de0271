import multiprocessing
import time

from guard.ledger import open_ledger
from guard.ledger.records import Approval, Halt, RunRecord
from guard.usage import UsageEvent


def make_run(ledger, run_id="r1", task="t"):
    ledger.create_run(RunRecord(id=run_id, tool="run", task=task, developer="dev", started_at=time.time()))


def test_events_are_idempotent_by_key(tmp_path):
    ledger = open_ledger(None, tmp_path)
    make_run(ledger)
    ev = UsageEvent("call-1", "usage_file", model="m", input_tokens=10, output_tokens=5)
    for _ in range(3):
        ledger.upsert_event("r1", ev, 0.01, True)
    t = ledger.run_totals("r1")
    assert (t.input_tokens, t.output_tokens, t.calls) == (10, 5, 1)
    assert abs(t.cost_usd - 0.01) < 1e-12


def test_task_totals_span_runs_and_halts_reopen_on_approval(tmp_path):
    ledger = open_ledger(None, tmp_path)
    make_run(ledger, "r1")
    make_run(ledger, "r2")
    ledger.upsert_event("r1", UsageEvent("a", "s", input_tokens=1), 1.0, True)
    ledger.upsert_event("r2", UsageEvent("a", "s", input_tokens=1), 2.0, True)
    assert ledger.task_totals("t").cost_usd == 3.0
    assert ledger.task_totals("t", exclude_run="r2").cost_usd == 1.0
    ledger.mark_task_halted("t", "usd", "r2")
    assert ledger.task_halts("t") == [("usd", "r2")]
    ledger.add_approval(Approval("r2", "t", "usd", 5.0, "lead"))
    assert ledger.task_halts("t") == [] and ledger.task_raises("t") == {"usd": 5.0}


def test_halt_round_trips(tmp_path):
    ledger = open_ledger(None, tmp_path)
    make_run(ledger)
    ledger.update_run("r1", status="halted", halt=Halt("usd", 2, 2.03, "stop", "msg"))
    run = ledger.get_run("r1")
    assert run.as_json()["halt"] == {"ceiling": "usd", "limit": 2, "used": 2.03, "action": "stop", "message": "msg"}
    assert ledger.get_run("r").id == "r1"  # unique prefix


def _writer(path, run_id, n):
    from pathlib import Path

    ledger = open_ledger(f"sqlite:{path}", Path("."))
    for i in range(n):
        # every writer also re-sends its previous key: replays must not double-count
        ledger.upsert_event(run_id, UsageEvent(f"k{i}", "s", input_tokens=1), 0.001, True)
        if i:
            ledger.upsert_event(run_id, UsageEvent(f"k{i - 1}", "s", input_tokens=1), 0.001, True)


def test_many_writers_on_one_sqlite_lose_and_double_nothing(tmp_path):
    path = tmp_path / "ledger.db"
    ledger = open_ledger(f"sqlite:{path}", tmp_path)
    for i in range(6):
        make_run(ledger, f"r{i}")
    procs = [multiprocessing.Process(target=_writer, args=(path, f"r{i}", 200)) for i in range(6)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    for i in range(6):
        assert ledger.run_totals(f"r{i}").input_tokens == 200
