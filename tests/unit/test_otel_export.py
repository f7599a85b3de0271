"""OTLP metrics export at run end, into a real OTLP/HTTP receiver on 127.0.0.1."""
from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from guard.ledger.records import Halt, RunRecord
from guard.otel_export import endpoint, export_run
from guard.usage import Totals
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


def test_run_end_exports_spend_tokens_and_halt(receiver: tuple[str, list[bytes]]) -> None:
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

    url, got = receiver
    run = RunRecord(id="abc", tool="claude", task="t", developer="ada@example.com", team="core",
                    status="halted", limits={"usd": 2.0}, halt=Halt("usd", 2.0, 2.1, "stop"),
                    usage=Totals(1000, 200, 0, 50, 2.1, 3, 3))
    assert export_run(run, {"claude-sonnet-4-5": (2.1, 1250)},
                      {"GUARD_OTEL_EXPORTER_OTLP_ENDPOINT": url, "GUARD_OTEL_EXPORTER_OTLP_HEADERS": "x-k=v"})
    wait_until(lambda: got, 60, message="an OTLP export")
    req = ExportMetricsServiceRequest.FromString(got[0])
    metrics = {m.name: m for rm in req.resource_metrics for sm in rm.scope_metrics for m in sm.metrics}
    assert {"guard.spend", "guard.tokens", "guard.runs", "guard.halts", "guard.budget.remaining"} <= set(metrics)
    spend = metrics["guard.spend"].sum.data_points[0]
    assert spend.as_double == pytest.approx(2.1)
    attrs = {a.key: a.value.string_value for a in spend.attributes}
    assert attrs == {"developer": "ada@example.com", "team": "core", "tool": "claude", "model": "claude-sonnet-4-5"}
    assert "run" not in str(attrs) and all("abc" not in v for v in attrs.values())
    tokens = {next(a.value.string_value for a in p.attributes if a.key == "kind"): p.as_int
              for p in metrics["guard.tokens"].sum.data_points}
    assert tokens == {"input": 1000, "output": 200, "cache_write": 0, "cache_read": 50}
