"""OTLP metrics export at run end, into a real OTLP/HTTP receiver on 127.0.0.1."""
from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psutil
import pytest

from guard.ledger.records import Halt, RunRecord
from guard.ledger.sqlite import SqliteLedger
from guard.otel_export import endpoint, export_run
from guard.usage import UsageEvent
from tests.helpers import wait_until


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[bytes]]]:
    got: list[bytes] = []

    class H(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            got.append(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *a: Any) -> None:
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}", got
    srv.shutdown()
    srv.server_close()


def test_endpoint_reads_guards_own_settings() -> None:
    assert endpoint({}) is None
    assert endpoint({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318/"}) == "http://c:4318/v1/metrics"
    assert endpoint({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318",
                     "GUARD_OTEL_EXPORTER_OTLP_ENDPOINT": "http://g:4318"}) == "http://g:4318/v1/metrics"
    assert endpoint({"GUARD_OTEL_EXPORTER_OTLP_ENDPOINT": "http://g:4318", "GUARD_OTEL_METRICS_EXPORTER": "none"}) is None


def test_run_end_exports_spend_tokens_and_halt(receiver: tuple[str, list[bytes]], tmp_path: Path) -> None:
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

    url, got = receiver
    ledger = SqliteLedger(tmp_path / "ledger.db")
    ledger.create_run(RunRecord(id="abc", tool="claude", task="t", developer="ada@example.com", team="core",
                                status="halted", limits={"usd": 2.0}, halt=Halt("usd", 2.0, 2.1, "stop"),
                                started_at=time.time()))
    ledger.upsert_event("abc", UsageEvent(key="1", source="t", model="claude-sonnet-4-5", input_tokens=600,
                                          output_tokens=200, cache_read_tokens=50), 1.5, True)
    ledger.upsert_event("abc", UsageEvent(key="2", source="t", model="claude-haiku-4-5", input_tokens=400), 0.6, True)
    assert not export_run(ledger, "abc", {})
    assert export_run(ledger, "abc", {"GUARD_OTEL_EXPORTER_OTLP_ENDPOINT": url,
                                      "GUARD_OTEL_EXPORTER_OTLP_HEADERS": "x-k=v"})

    wait_until(lambda: got, 60, message="an OTLP export")
    req = ExportMetricsServiceRequest.FromString(got[0])
    metrics = {m.name: m for rm in req.resource_metrics for sm in rm.scope_metrics for m in sm.metrics}
    assert {"guard.spend", "guard.tokens", "guard.runs", "guard.halts", "guard.budget.remaining"} <= set(metrics)
    spend = {next(a.value.string_value for a in p.attributes if a.key == "model"): p
             for p in metrics["guard.spend"].sum.data_points}
    assert {m: p.as_double for m, p in spend.items()} == pytest.approx(
        {"claude-sonnet-4-5": 1.5, "claude-haiku-4-5": 0.6})
    attrs = {a.key: a.value.string_value for a in spend["claude-sonnet-4-5"].attributes}
    assert attrs == {"developer": "ada@example.com", "team": "core", "tool": "claude", "model": "claude-sonnet-4-5"}
    assert all("abc" not in v for v in attrs.values())
    assert metrics["guard.budget.remaining"].histogram.data_points[0].sum == pytest.approx(0.0)
    tokens = {next(a.value.string_value for a in p.attributes if a.key == "kind"): p.as_int
              for p in metrics["guard.tokens"].sum.data_points}
    assert tokens == {"input": 1000, "output": 200, "cache_write": 0, "cache_read": 50}
    assert metrics["guard.halts"].sum.data_points[0].as_int == 1


def test_export_never_waits_for_the_collector(tmp_path: Path) -> None:
    """A collector that accepts and never answers: export_run has returned before the detached
    exporter even connects, and guard's exit does not wait for it."""
    ledger = SqliteLedger(tmp_path / "ledger.db")
    ledger.create_run(RunRecord(id="r1", tool="claude", task="t", developer="d", started_at=time.time()))
    with socket.socket() as hole:
        hole.bind(("127.0.0.1", 0))
        hole.listen(1)
        hole.settimeout(60)
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{hole.getsockname()[1]}"}
        assert export_run(ledger, "r1", env)
        conn, _ = hole.accept()   # the exporter connects after export_run came back
        with conn:
            conn.settimeout(60)
            assert conn.recv(4).startswith(b"POST")
            # still waiting for our answer, in a session of its own (guard's terminal and signals
            # do not reach it, and guard does not wait for it)
            exporters = [p for p in psutil.process_iter(["cmdline"]) if "guard.otel_export" in (p.info["cmdline"] or [])]
            assert exporters and all(os.getsid(p.pid) != os.getsid(0) for p in exporters)
