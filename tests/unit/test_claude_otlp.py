"""The OTLP/HTTP JSON receiver against a real Claude Code 2.1.330 export."""
from __future__ import annotations

import json
import urllib.request
from pathlib import Path

from guard.adapters.claude_otlp import OtlpReceiver, events_from_logs
from guard.usage import UsageEvent

FIX = Path(__file__).resolve().parent.parent / "fixtures" / "claude_code" / "otlp-logs-2.1.330.jsonl"


def payloads() -> list[dict[str, object]]:
    return [json.loads(x) for x in FIX.read_text().splitlines() if x.strip()]


def test_api_request_events_only() -> None:
    evs = [e for p in payloads() for e in events_from_logs(p)]
    assert len(evs) == 1
    ev = evs[0]
    assert ev.key == "req:req_fake0004"  # the same key the transcript parser uses
    assert (ev.model, ev.input_tokens, ev.output_tokens) == ("claude-opus-5-5", 1004, 54)
    assert (ev.cache_read_tokens, ev.cache_write_tokens, ev.cache_write_1h_tokens) == (3000, 200, 0)
    assert ev.cost_usd is None  # guard prices tokens itself, whichever source saw them


def test_string_encoded_ints_and_missing_request_id() -> None:
    rec = {"body": {"stringValue": "claude_code.api_request"}, "attributes": [
        {"key": "input_tokens", "value": {"intValue": "12"}},
        {"key": "session.id", "value": {"stringValue": "s"}},
        {"key": "event.sequence", "value": {"intValue": 4}},
    ]}
    [ev] = events_from_logs({"resourceLogs": [{"scopeLogs": [{"logRecords": [rec]}]}]})
    assert ev.input_tokens == 12 and ev.key == "otel:s:4"


def test_receiver_over_http() -> None:
    got: list[UsageEvent] = []
    r = OtlpReceiver(got.append)
    r.bind()
    r.start()
    try:
        for p in payloads():
            req = urllib.request.Request(f"{r.endpoint}/v1/logs", data=json.dumps(p).encode(),
                                         headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=5) as resp:
                assert resp.status == 200
        req = urllib.request.Request(f"{r.endpoint}/v1/logs", data=b"\x0a\x02pb",
                                     headers={"Content-Type": "application/x-protobuf"})
        try:
            urllib.request.urlopen(req, timeout=5)
            raise AssertionError("protobuf must be refused")
        except urllib.error.HTTPError as e:
            assert e.code == 415
    finally:
        r.stop()
    assert [e.key for e in got] == ["req:req_fake0004"]


def test_a_client_reset_mid_request_prints_no_traceback(capfd) -> None:  # type: ignore[no-untyped-def]
    """Claude Code killed at a stop resets its telemetry connection: nothing reaches the screen."""
    import socket
    import struct

    from guard.adapters.claude_otlp import OtlpReceiver
    from tests.helpers import wait_until

    errors: list[str] = []
    rec = OtlpReceiver(lambda ev: None, on_error=errors.append)
    rec.start()
    try:
        port = int(rec.endpoint.rsplit(":", 1)[1])
        for _ in range(3):
            s = socket.create_connection(("127.0.0.1", port))
            s.sendall(b"POST /v1/logs HTTP/1.1\r\nContent-Length: 100000\r\nContent-Type: application/json\r\n\r\n{")
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST on close
            s.close()
        # the receiver still answers afterwards
        import urllib.request

        req = urllib.request.Request(f"{rec.endpoint}/v1/logs", data=b"{}", headers={"Content-Type": "application/json"})
        assert wait_until(lambda: urllib.request.urlopen(req, timeout=5).status == 200, timeout=10)
    finally:
        rec.stop()
    err = capfd.readouterr().err
    assert "Traceback" not in err and "ConnectionResetError" not in err
    assert errors == []
