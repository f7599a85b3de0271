"""The metering proxy in front of a fake OpenAI API: Chat Completions (streaming with and without
include_usage, and not) and the Responses API, recorded exactly; the client sees what it asked for."""
from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

from guard.pricing import Pricer
from guard.proxy import OpenGate, RunningProxy, start_proxy
from tests.fakes.openai_server import FakeOpenAI, Request, Usage
from tests.fakes.proxy_upstreams import CeilingGate, RecordingSink

pytestmark = pytest.mark.e2e


def usage(req: Request) -> Usage:
    return Usage(prompt_tokens=5000 + req.n, completion_tokens=70 + req.n, cached_tokens=3000)


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(usage=usage, aux=None) as f:
        yield f


@pytest.fixture
def sink() -> RecordingSink:
    return RecordingSink()


@pytest.fixture
def proxy(fake: FakeOpenAI, sink: RecordingSink) -> Iterator[RunningProxy]:
    p = start_proxy(sink, OpenGate(), Pricer(), {"OPENAI_BASE_URL": fake.url})
    yield p
    p.stop()


def post(proxy: RunningProxy, path: str, body: dict[str, Any], tool: str = "run") -> tuple[int, bytes, dict[str, str]]:
    url = urlsplit(f"{proxy.url}/{tool}/openai")
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    conn.request("POST", url.path + path, body=json.dumps(body),
                 headers={"Authorization": "Bearer sk-openai-test", "Content-Type": "application/json"})
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp.status, data, {k.lower(): v for k, v in resp.getheaders()}


def sse_objects(data: bytes) -> list[Any]:
    out = []
    for line in data.splitlines():
        if line.startswith(b"data: ") and line != b"data: [DONE]":
            out.append(json.loads(line[6:]))
    return out


def assert_exact(sink: RecordingSink, fake: FakeOpenAI) -> None:
    assert sink.wait_events(len(fake.completed()))
    truth = fake.usage_totals()
    got = sink.totals()
    assert got["input_tokens"] == truth["input_tokens"]          # cached tokens excluded, as guard counts
    assert got["cache_read_tokens"] == truth["cached_tokens"]
    assert got["output_tokens"] == truth["output_tokens"]
    assert got["calls"] == truth["calls"]
    # a Responses API response is keyed by its id, as Codex's rollouts name it
    assert {e.key for e in sink.events} == {f"resp:{s.response_id}" if s.api == "responses" else f"req:{s.request_id}"
                                            for s in fake.completed()}
    assert not any(e.estimated or e.interrupted for e in sink.events)


def test_chat_stream_without_include_usage_is_metered_and_looks_unchanged(
        fake: FakeOpenAI, sink: RecordingSink, proxy: RunningProxy) -> None:
    status, data, headers = post(proxy, "/chat/completions", {
        "model": "gpt-4o", "stream": True, "messages": [{"role": "user", "content": "hi"}]})
    assert status == 200 and data.endswith(b"data: [DONE]\n\n")
    chunks = sse_objects(data)
    assert all(c["choices"] for c in chunks)                  # the usage-only chunk was not shown
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks) == "Done. No changes needed."
    assert fake.requests[0].include_usage                      # guard asked the upstream for it
    assert fake.requests[0].headers["authorization"] == "Bearer sk-openai-test"
    assert_exact(sink, fake)


def test_chat_stream_with_include_usage_keeps_the_usage_chunk(
        fake: FakeOpenAI, sink: RecordingSink, proxy: RunningProxy) -> None:
    status, data, _ = post(proxy, "/chat/completions", {
        "model": "gpt-4o", "stream": True, "stream_options": {"include_usage": True},
        "messages": [{"role": "user", "content": "hi"}]})
    assert status == 200
    assert sse_objects(data)[-1]["usage"]["prompt_tokens"] == 5001
    assert_exact(sink, fake)


def test_chat_and_responses_non_stream_and_responses_stream(
        fake: FakeOpenAI, sink: RecordingSink, proxy: RunningProxy) -> None:
    status, data, _ = post(proxy, "/chat/completions", {"model": "gpt-4o", "messages": [{"role": "user", "content": "a"}]})
    assert status == 200 and json.loads(data)["usage"]["prompt_tokens"] == 5001
    status, data, _ = post(proxy, "/responses", {"model": "gpt-4o", "input": "b"})
    assert status == 200 and json.loads(data)["usage"]["input_tokens"] == 5002
    status, data, _ = post(proxy, "/responses", {"model": "gpt-4o", "input": "c", "stream": True})
    assert status == 200 and b"response.completed" in data
    assert "stream_options" not in fake.requests[2].body       # Responses streams carry usage already
    assert_exact(sink, fake)


def test_refusal_in_openai_format_with_the_status_each_client_treats_as_final(fake: FakeOpenAI) -> None:
    gate = CeilingGate(limit_usd=0.0, pricer=Pricer())
    proxy = start_proxy(gate.sink, gate, Pricer(), {"OPENAI_BASE_URL": fake.url})
    try:
        body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}
        status, data, headers = post(proxy, "/chat/completions", body, tool="aider")
        assert status == 400 and headers["x-should-retry"] == "false"
        err = json.loads(data)["error"]
        assert err["code"] == "guard_budget_exceeded" and "task ceiling reached" in err["message"]
        status, _, _ = post(proxy, "/responses", body, tool="codex")
        assert status == 400                                       # Codex retries a 402 five times
        status, _, _ = post(proxy, "/chat/completions", body, tool="run")
        assert status == 402
    finally:
        proxy.stop()
    assert fake.requests == []


def test_upstream_error_passes_through(fake: FakeOpenAI, sink: RecordingSink, proxy: RunningProxy) -> None:
    from tests.fakes.openai_server import Reply

    fake.script = lambda req: Reply(status=429, error_type="rate_limit_exceeded")
    status, data, headers = post(proxy, "/chat/completions", {"model": "gpt-4o", "messages": []})
    assert status == 429 and json.loads(data)["error"]["type"] == "rate_limit_exceeded"
    assert headers["x-request-id"].startswith("req_")
    assert sink.events == []
