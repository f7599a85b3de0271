"""The metering proxy in front of a fake Anthropic API: exact usage through the real `anthropic`
SDK, refusals before spend, concurrent requests under a ceiling, disconnects, the secret."""
from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import anthropic
import pytest

from guard.pricing import Pricer
from guard.proxy import OpenGate, RunningProxy, start_proxy
from guard.proxy.anthropic_wire import estimate
from tests.fakes.anthropic_server import FakeAnthropic, Reply, Text, Usage, reply
from tests.fakes.proxy_upstreams import CeilingGate, RecordingSink

pytestmark = pytest.mark.e2e

PRICER = Pricer()
MODEL = "claude-sonnet-4-6"


def wait_until(pred: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.01)
    return pred()


def usage(n: int) -> Usage:
    return Usage(input_tokens=1000 + n, output_tokens=40 + n, cache_write_5m=100, cache_write_1h=50 + n,
                 cache_read=2000 + n)


@pytest.fixture
def fake() -> Iterator[FakeAnthropic]:
    with FakeAnthropic(usage=usage) as f:
        yield f


@pytest.fixture
def sink() -> RecordingSink:
    return RecordingSink()


@pytest.fixture
def proxy(fake: FakeAnthropic, sink: RecordingSink) -> Iterator[RunningProxy]:
    p = start_proxy(sink, OpenGate(), PRICER, {"ANTHROPIC_BASE_URL": fake.url})
    yield p
    p.stop()


def sdk(proxy: RunningProxy, tool: str = "run") -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=proxy.client_env(tool)["ANTHROPIC_BASE_URL"],
                               api_key="sk-ant-test-key", max_retries=0)


def assert_matches_truth(sink: RecordingSink, fake: FakeAnthropic) -> None:
    truth = fake.usage_totals()
    got = sink.totals()
    for k in ("input_tokens", "output_tokens", "cache_write_tokens", "cache_write_1h_tokens", "cache_read_tokens"):
        assert got[k] == truth[k], k
    assert got["calls"] == truth["calls"]
    assert {e.key for e in sink.events} == {f"req:{s.request_id}" for s in fake.completed()}


def test_sdk_calls_streaming_and_not_are_recorded_exactly(fake: FakeAnthropic, sink: RecordingSink,
                                                         proxy: RunningProxy) -> None:
    client = sdk(proxy)
    msg = client.messages.create(model=MODEL, max_tokens=100, messages=[{"role": "user", "content": "hi"}])
    assert msg.content[0].type == "text" and msg.usage.input_tokens == 1001
    with client.messages.stream(model=MODEL, max_tokens=100, messages=[{"role": "user", "content": "hi"}]) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()
    assert text == "Done." and final.usage.output_tokens == 42
    assert sink.wait_events(2)
    assert_matches_truth(sink, fake)
    assert all(e.source == "proxy" and not e.estimated and not e.interrupted and e.steps == 1 for e in sink.events)
    assert {e.model for e in sink.events} == {MODEL}
    # Credentials reach the upstream untouched; the proxy's secret does not.
    for req in fake.requests:
        assert "sk-ant-test-key" in (req.headers.get("x-api-key") or req.headers.get("authorization") or "")
        assert req.path.startswith("/v1/messages")
        assert req.headers["host"] == f"127.0.0.1:{fake.port}"


def test_custom_agent_process_through_guard_proxy_env(fake: FakeAnthropic, sink: RecordingSink,
                                                      proxy: RunningProxy, tmp_path: Path) -> None:
    agent = tmp_path / "agent.py"
    agent.write_text(textwrap.dedent("""
        import anthropic
        client = anthropic.Anthropic(max_retries=0)   # base URL from ANTHROPIC_BASE_URL
        for i in range(3):
            with client.messages.stream(model="claude-haiku-4-5", max_tokens=64,
                                        messages=[{"role": "user", "content": f"step {i}"}]) as s:
                s.get_final_message()
        print("agent done")
    """))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "OPENAI_"))}
    env.update(proxy.client_env("run"), ANTHROPIC_API_KEY="sk-ant-agent")
    out = subprocess.run([sys.executable, str(agent)], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert sink.wait_events(3)
    assert_matches_truth(sink, fake)
    assert sum(e.steps for e in sink.events) == 3     # a custom agent's model call is a step


def test_twenty_concurrent_requests_never_spend_past_a_ceiling_that_fits_five(tmp_path: Path) -> None:
    body = {"model": MODEL, "max_tokens": 400, "messages": [{"role": "user", "content": "go " * 50}]}
    raw = json.dumps(body).encode()
    est = estimate(raw, body)
    worst = PRICER.worst_case(MODEL, est.input_tokens, est.max_output_tokens)
    gate = CeilingGate(limit_usd=worst * 5.5, pricer=PRICER)
    # Every answer costs what its reservation covered, so after five nothing else fits.
    big = Usage(input_tokens=est.input_tokens, output_tokens=400)
    with FakeAnthropic(script=lambda req: reply(Text("ok"), usage=big, chunk_delay=0.05)) as fake:
        proxy = start_proxy(gate.sink, gate, PRICER, {"ANTHROPIC_BASE_URL": fake.url})
        try:
            url = urlsplit(proxy.client_env("claude")["ANTHROPIC_BASE_URL"])
            statuses: list[int] = []
            lock = threading.Lock()
            start = threading.Barrier(20)

            def one() -> None:
                conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
                start.wait()
                conn.request("POST", url.path + "/v1/messages", body=json.dumps({**body, "stream": True}),
                             headers={"x-api-key": "k", "content-type": "application/json"})
                resp = conn.getresponse()
                resp.read()
                with lock:
                    statuses.append(resp.status)
                conn.close()

            threads = [threading.Thread(target=one) for _ in range(20)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
        finally:
            proxy.stop()
    assert len(statuses) == 20
    assert statuses.count(200) == 5 and statuses.count(402) == 15
    assert len(fake.requests) == 5                     # refused requests never left guard
    assert gate.spent <= gate.limit + 1e-9
    assert gate.max_reserved <= gate.limit + 1e-9
    assert abs(gate.reserved) < 1e-9                  # every reservation released


def test_refusal_is_final_for_each_client_and_names_the_ceiling(fake: FakeAnthropic) -> None:
    gate = CeilingGate(limit_usd=0.0001, pricer=PRICER)
    proxy = start_proxy(gate.sink, gate, PRICER, {"ANTHROPIC_BASE_URL": fake.url, "ANTHROPIC_API_BASE": fake.url})
    try:
        with pytest.raises(anthropic.APIStatusError) as ei:
            sdk(proxy, "claude").messages.create(model=MODEL, max_tokens=100,
                                                 messages=[{"role": "user", "content": "hi"}])
        assert ei.value.status_code == 402
        assert ei.value.response.headers["x-should-retry"] == "false"
        err = ei.value.body["error"]    # type: ignore[index]
        assert err["type"] == "billing_error"
        assert "$0.0001 task ceiling: $0.00 spent, the next request needs at least $0." in err["message"]
        # aider (litellm) retries 402 but not 400.
        with pytest.raises(anthropic.BadRequestError):
            sdk(proxy, "aider").messages.create(model=MODEL, max_tokens=100,
                                                messages=[{"role": "user", "content": "hi"}])
        # The first refusal halted the run: every request after it is refused, even one that would fit.
        with pytest.raises(anthropic.APIStatusError) as ei:
            sdk(proxy, "run").messages.create(model=MODEL, max_tokens=1, messages=[{"role": "user", "content": "x"}])
        assert "halted at step 0: $0.0001 task ceiling" in str(ei.value)
    finally:
        proxy.stop()
    assert fake.requests == [] and gate.sink.events == []


def test_client_disconnect_mid_stream_records_input_and_stops_the_generation(
        fake: FakeAnthropic, sink: RecordingSink, proxy: RunningProxy) -> None:
    fake.script = lambda req: reply(*[Text(f"part {i} " * 20) for i in range(40)], chunk_delay=0.05)
    url = urlsplit(proxy.client_env("claude")["ANTHROPIC_BASE_URL"])
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    conn.request("POST", url.path + "/v1/messages?beta=true",
                 body=json.dumps({"model": MODEL, "max_tokens": 4000, "stream": True,
                                  "messages": [{"role": "user", "content": "long"}]}),
                 headers={"x-api-key": "k", "content-type": "application/json"})
    resp = conn.getresponse()
    seen = b""
    while b"content_block_delta" not in seen:
        seen += resp.read1(4096)
    conn.sock.close()            # the agent was killed / the user pressed Esc
    conn.close()
    assert sink.wait_events(1)
    ev = sink.events[0]
    truth = fake.served[0]
    assert ev.key == f"req:{truth.request_id}"
    assert ev.interrupted and ev.estimated
    assert ev.input_tokens == truth.usage.input_tokens and ev.cache_read_tokens == truth.usage.cache_read
    assert 1 <= ev.output_tokens <= 4000
    # The proxy closed its side, so the upstream stopped streaming long before its 6 s script.
    assert wait_until(lambda: truth.finished_at is not None, 5)
    assert not truth.completed


def test_upstream_errors_pass_through_unchanged_without_usage(fake: FakeAnthropic, sink: RecordingSink) -> None:
    fake.script = lambda req: Reply(status=529, error_type="overloaded_error")
    gate = CeilingGate(limit_usd=10.0, pricer=PRICER)
    proxy = start_proxy(sink, gate, PRICER, {"ANTHROPIC_BASE_URL": fake.url})
    try:
        url = urlsplit(proxy.client_env("claude")["ANTHROPIC_BASE_URL"])
        conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
        conn.request("POST", url.path + "/v1/messages", body=json.dumps({"model": MODEL, "max_tokens": 5}),
                     headers={"x-api-key": "k"})
        resp = conn.getresponse()
        body = json.loads(resp.read())
        assert resp.status == 529 and body["error"]["type"] == "overloaded_error"
        assert resp.getheader("request-id", "").startswith("req_")
    finally:
        proxy.stop()
    assert sink.events == [] and gate.reserved == 0 and gate.accepted == 1


def test_secret_is_required_and_only_loopback_is_bound(fake: FakeAnthropic, proxy: RunningProxy) -> None:
    url = urlsplit(proxy.url)
    assert url.hostname == "127.0.0.1" and len(url.path) > 20
    for path in ("/v1/messages", "/claude/anthropic/v1/messages", url.path[:-1] + "/v1/messages"):
        conn = http.client.HTTPConnection("127.0.0.1", url.port, timeout=5)
        conn.request("POST", path, body=b'{"model":"x","max_tokens":1}', headers={"x-api-key": "k"})
        resp = conn.getresponse()
        assert resp.status == 403
        assert b"per-run secret" in resp.read()
        conn.close()
    assert fake.requests == []
    # HEAD probes (Claude Code at startup) pass through to the upstream, unmetered.
    conn = http.client.HTTPConnection("127.0.0.1", url.port, timeout=5)
    conn.request("HEAD", url.path + "/claude/anthropic/")
    assert conn.getresponse().status == 200 and fake.heads == ["/"]
