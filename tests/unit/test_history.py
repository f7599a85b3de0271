"""`guard import`: history read through the live parsers, counted once across files and against
live metering, priced at each call's time (totals to the cent), read incrementally; the spend
counts toward period ceilings; dry runs write nothing."""
from __future__ import annotations

import json
import random
import time
from pathlib import Path

import pytest

from guard import budgets
from guard.budgets import Identity
from guard.history import claude as claude_history
from guard.history.aider import AiderHistory
from guard.history.claude import ClaudeHistory
from guard.history.codex import CodexHistory
from guard.history.importer import ImportResult, import_history
from guard.history.pricing import BulkPricer
from guard.ledger.records import RunRecord
from guard.ledger.sqlite import SqliteLedger
from guard.pricing import Pricer
from guard.usage import UsageEvent
from tests.transcripts import Response, SessionWriter, write_tree

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
ALICE = Identity(developer="alice", team="core")


def ledger_at(tmp_path: Path) -> SqliteLedger:
    return SqliteLedger(tmp_path / "ledger.db")


def run_import(led: SqliteLedger, source: object, paths: list[Path], dry_run: bool = False) -> ImportResult:
    return import_history(led, [(source, paths)], ALICE, BulkPricer(Pricer()), dry_run=dry_run)  # type: ignore[list-item]


def truth_usd(truth: dict[str, Response]) -> float:
    pricer = Pricer()
    return sum(pricer.price(r.event()).usd for r in truth.values())


def imported(led: SqliteLedger) -> tuple[float, int, int, int, int, int, int]:
    row = led._execute("SELECT COALESCE(SUM(cost_usd),0), COUNT(*), COALESCE(SUM(input_tokens),0), "
                       "COALESCE(SUM(output_tokens),0), COALESCE(SUM(cache_write_tokens),0), "
                       "COALESCE(SUM(cache_read_tokens),0), COALESCE(SUM(steps),0) FROM events")[0]
    return (float(row[0]), *(int(v) for v in row[1:]))  # type: ignore[return-value]


def truth_sums(truth: dict[str, Response]) -> tuple[int, int, int, int, int]:
    evs = [r.event() for r in truth.values()]
    return (sum(e.input_tokens for e in evs), sum(e.output_tokens for e in evs),
            sum(e.cache_write_tokens for e in evs), sum(e.cache_read_tokens for e in evs),
            sum(e.steps for e in evs))


@pytest.mark.parametrize("parallel", [False, True])
def test_claude_import_equals_the_price_of_the_tokens_to_the_cent(tmp_path: Path, parallel: bool,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    if parallel:
        monkeypatch.setattr(claude_history, "_PARALLEL_BYTES", 0)
    truth = write_tree(tmp_path / "claude", 3_000_000, seed=11)
    assert any(r.usage["cache_read_input_tokens"] > 200_000 for r in truth.values())   # long context
    assert any(r.usage["cache_creation"]["ephemeral_1h_input_tokens"] for r in truth.values())
    led = ledger_at(tmp_path)
    result = run_import(led, ClaudeHistory(), [tmp_path / "claude" / "projects"])
    usd, calls, *kinds = imported(led)
    assert calls == len(truth)                        # forks and repeated lines counted once
    assert tuple(kinds) == truth_sums(truth)
    assert round(usd, 2) == round(truth_usd(truth), 2)
    assert abs(usd - truth_usd(truth)) < 0.005
    assert result.sources["claude"].new == len(truth) and result.usd == pytest.approx(usd)
    # the rollup the reports read says the same
    assert float(led._execute("SELECT SUM(cost_usd) FROM run_usage")[0][0]) == pytest.approx(usd)
    runs = led.list_runs()
    assert runs and all(r.accuracy == "imported" and r.status == "completed" for r in runs)
    assert {r.developer for r in runs} == {"alice"} and {r.task for r in runs} <= {"api", "web", "infra", "docs"}


def test_repeat_import_reads_only_new_bytes_and_grows_a_response(tmp_path: Path) -> None:
    root = tmp_path / "claude"
    truth = write_tree(root, 400_000, seed=3)
    led = ledger_at(tmp_path)
    run_import(led, ClaudeHistory(), [root])
    again = run_import(led, ClaudeHistory(), [root])
    assert again.sources["claude"].files_read == 0 and again.usd == 0

    target = sorted(root.rglob("*.jsonl"))[0]
    session = json.loads(target.read_text().splitlines()[0])["sessionId"]
    w = SessionWriter(random.Random(5), time.time() - 60, "/home/dev/api")
    lines = w.turn(session, False, "claude-opus-4-5")
    # and a late line of an old response, with a higher output count than before
    old = json.loads(next(ln for ln in target.read_text().splitlines() if '"type":"assistant"' in ln))
    old["message"]["usage"]["output_tokens"] += 1000
    old["message"]["content"] = [{"type": "text", "text": "more"}]
    lines.append(json.dumps(old, separators=(",", ":")))
    appended = "\n".join(lines) + "\n"
    with target.open("a") as f:
        f.write(appended)
        f.write('{"type":"assistant","partial line still being written')
    result = run_import(led, ClaudeHistory(), [root])
    s = result.sources["claude"]
    assert s.files_read == 1 and s.bytes_read == len(appended.encode())
    assert s.new == 1 and s.grown == 1
    truth.update(w.truth)
    key = f"req:{old['requestId']}"
    truth[key] = Response(key, truth[key].model, old["message"]["usage"], truth[key].ts, truth[key].steps)
    usd, calls, *_ = imported(led)
    assert calls == len(truth) and abs(usd - truth_usd(truth)) < 0.005


def test_rewritten_or_replaced_file_is_read_again_without_double_counting(tmp_path: Path) -> None:
    root = tmp_path / "claude"
    write_tree(root, 300_000, seed=4)
    led = ledger_at(tmp_path)
    run_import(led, ClaudeHistory(), [root])
    before = imported(led)
    target = sorted(root.rglob("*.jsonl"))[-1]
    lines = target.read_text().splitlines(keepends=True)
    tmp = target.with_suffix(".new")
    tmp.write_text("".join(lines[1:] + lines[:1]))  # the same lines, rewritten: another file, other start
    tmp.replace(target)
    result = run_import(led, ClaudeHistory(), [root])
    assert result.sources["claude"].files_read == 1 and result.sources["claude"].same > 0
    assert result.sources["claude"].new == 0 and imported(led) == before


def test_calls_metered_live_are_not_imported_again(tmp_path: Path) -> None:
    root = tmp_path / "claude"
    truth = write_tree(root, 200_000, seed=8)
    led = ledger_at(tmp_path)
    live_key = sorted(truth)[0]
    led.create_run(RunRecord(id="0123456789abcdef0123456789abcdef", tool="claude", task="t", developer="alice",
                             started_at=time.time()))
    led.upsert_event("0123456789abcdef0123456789abcdef", UsageEvent(key=live_key, source="proxy",
                     model="claude-opus-4-5", input_tokens=5, ts=time.time()), 0.5, True)
    result = run_import(led, ClaudeHistory(), [root])
    assert result.sources["claude"].live == 1 and result.sources["claude"].new == len(truth) - 1
    rows = led._execute("SELECT run_id FROM events WHERE key = ?", (live_key,))
    assert rows == [("0123456789abcdef0123456789abcdef",)]


def test_dry_run_writes_nothing(tmp_path: Path) -> None:
    root = tmp_path / "claude"
    truth = write_tree(root, 200_000, seed=9)
    led = ledger_at(tmp_path)
    result = run_import(led, ClaudeHistory(), [root], dry_run=True)
    assert result.dry_run and result.sources["claude"].new == len(truth)
    assert abs(result.usd - truth_usd(truth)) < 0.005
    for table in ("events", "runs", "run_usage", "import_cursors"):
        assert led._execute(f"SELECT COUNT(*) FROM {table}")[0][0] == 0
    assert run_import(led, ClaudeHistory(), [root]).sources["claude"].new == len(truth)


def test_imported_spend_counts_toward_developer_ceilings(tmp_path: Path) -> None:
    root = tmp_path / "claude"
    truth = write_tree(root, 200_000, seed=10, start=time.time() - 7200, turns_per_session=5)
    assert max(r.ts for r in truth.values()) < time.time()
    led = ledger_at(tmp_path)
    run_import(led, ClaudeHistory(), [root])
    usd = imported(led)[0]
    policy = budgets.BudgetPolicy.from_config({"budgets": {"developer": {"month": 100000}}})
    (ceiling,) = budgets.period_ceilings(led, ALICE, policy)
    assert ceiling.used == pytest.approx(usd) and usd > 0


def _rollout(path: Path, lines: list[dict]) -> None:
    with path.open("a") as f:
        for obj in lines:
            f.write(json.dumps(obj) + "\n")


def _token_count(total: int, last_in: int, cached: int, out: int, ts: str) -> dict:
    return {"timestamp": ts, "type": "event_msg", "payload": {"type": "token_count", "info": {
        "total_token_usage": {"input_tokens": total, "output_tokens": 0, "total_tokens": total},
        "last_token_usage": {"input_tokens": last_in, "cached_input_tokens": cached, "output_tokens": out}}}}


def test_codex_rollouts_keyed_as_live_with_the_model_carried_over(tmp_path: Path) -> None:
    d = tmp_path / "sessions" / "2026" / "11" / "20"
    d.mkdir(parents=True)
    path = d / "rollout-2026-11-20T10-00-00-abc.jsonl"
    _rollout(path, [
        {"timestamp": "2026-11-20T10:00:00Z", "type": "session_meta", "payload": {"cwd": "/home/dev/api"}},
        {"timestamp": "2026-11-20T10:00:01Z", "type": "turn_context", "payload": {"model": "gpt-5"}},
        {"timestamp": "2026-11-20T10:00:02Z", "type": "event_msg", "payload": {"type": "token_count", "info": None}},
        _token_count(1500, 1000, 400, 500, "2026-11-20T10:00:03Z"),
    ])
    led = ledger_at(tmp_path)
    run_import(led, CodexHistory(), [tmp_path / "sessions"])
    _rollout(path, [_token_count(4000, 2000, 1500, 500, "2026-11-20T10:05:00Z")])
    result = run_import(led, CodexHistory(), [tmp_path / "sessions"])
    assert result.sources["codex"].new == 1 and result.sources["codex"].files_read == 1
    evs = {e.key: (e, cost) for e, cost, _ in led.run_events("imp-codex-2026-11-20T10-00-00-abc")}
    assert set(evs) == {f"codex:{path.name}:1500", f"codex:{path.name}:4000"}
    late, cost = evs[f"codex:{path.name}:4000"]
    assert late.model == "gpt-5" and late.input_tokens == 500 and late.cache_read_tokens == 1500
    assert cost == pytest.approx(Pricer().price(late).usd) and cost > 0
    assert led.get_run("imp-codex-2026-11-20T10-00-00-abc").task == "api"


def test_aider_logs_and_histories_are_estimates(tmp_path: Path) -> None:
    led = ledger_at(tmp_path)
    result = run_import(led, AiderHistory(), [FIXTURES / "aider"])
    s = result.sources["aider"]
    assert s.new > 0 and s.estimated == s.new
    assert all(bool(r[0]) for r in led._execute("SELECT estimated FROM events"))
    # aider's stated cost of the call, as it logged it
    stated = {round(float(r[0]), 6) for r in led._execute("SELECT cost_usd FROM events")}
    assert 0.006075 in stated and 0.0061 in stated
    assert run_import(led, AiderHistory(), [FIXTURES / "aider"]).sources["aider"].files_read == 0


def test_fixture_transcripts_fork_and_subagent_counted_once(tmp_path: Path) -> None:
    led = ledger_at(tmp_path)
    result = run_import(led, ClaudeHistory(), [FIXTURES / "claude_code"])
    keys = [r[0] for r in led._execute("SELECT key FROM events")]
    assert len(keys) == len(set(keys)) == result.sources["claude"].new
    sub = FIXTURES / "claude_code" / "subagent-session"
    sub_keys = {f"req:{json.loads(ln)['requestId']}" for f in sub.rglob("agent-*.jsonl")
                for ln in f.read_text().splitlines() if '"requestId"' in ln}
    assert sub_keys and sub_keys <= set(keys)


def test_transcripts_not_written_compactly_are_still_read(tmp_path: Path) -> None:
    src = FIXTURES / "claude_code" / "transcript-2.1.330-tool-roundtrip.jsonl"
    spaced = tmp_path / "spaced.jsonl"
    spaced.write_text("".join(json.dumps(json.loads(ln)) + "\n" for ln in src.read_text().splitlines()))
    compact, loose = ledger_at(tmp_path / "a"), ledger_at(tmp_path / "b")
    run_import(compact, ClaudeHistory(), [src])
    run_import(loose, ClaudeHistory(), [spaced])
    assert imported(loose) == imported(compact) and imported(compact)[1] > 0


def test_codex_token_usage_records_keyed_as_the_proxy_and_counts_not_doubled(tmp_path: Path) -> None:
    from guard.proxy.openai_wire import response_key

    d = tmp_path / "sessions"
    d.mkdir()
    path = d / "rollout-2026-11-21T10-00-00-rec.jsonl"
    _rollout(path, [
        {"timestamp": "2026-11-21T10:00:01Z", "type": "turn_context", "payload": {"model": "gpt-5"}},
        {"timestamp": "2026-11-21T10:00:02Z", "type": "token_usage_record", "payload": {
            "response_id": "resp_1", "usage": {"input_tokens": 1000, "cached_input_tokens": 400,
                                                "output_tokens": 50}}},
        _token_count(1050, 1000, 400, 50, "2026-11-21T10:00:03Z"),     # the same response again
    ])
    led = ledger_at(tmp_path)
    assert run_import(led, CodexHistory(), [d]).sources["codex"].new == 1
    (ev, _cost, _known), = led.run_events("imp-codex-2026-11-21T10-00-00-rec")
    assert ev.key == response_key("resp_1") and ev.input_tokens == 600 and ev.cache_read_tokens == 400
    _rollout(path, [_token_count(2100, 1000, 400, 50, "2026-11-21T10:01:03Z")])
    assert run_import(led, CodexHistory(), [d]).sources["codex"].new == 0   # still a recorded rollout
