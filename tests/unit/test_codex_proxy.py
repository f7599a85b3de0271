"""The metering proxy as Codex meets it: the upstream Codex's own config names, its WebSocket
attempt answered at once, a refusal it treats as final, Responses usage with cache writes keyed
by response id. A real proxy on 127.0.0.1 in front of the fake Responses API (no Codex binary)."""
from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from guard.pricing import Pricer
from guard.proxy import OpenGate, RunningProxy, openai_wire, start_proxy
from tests.fakes.proxy_upstreams import CeilingGate, RecordingSink
from tests.fakes.responses_server import FakeResponses, Usage

BODY = {"model": "gpt-5", "input": [{"role": "user", "content": "hi"}], "stream": True}


@pytest.fixture
def fake() -> Iterator[FakeResponses]:
    with FakeResponses(usage=lambda req: Usage(10_000 + req.n, 200, cached_tokens=3_000,
                                               cache_write_tokens=2_000, reasoning_tokens=50)) as f:
        yield f


def codex_env(tmp_path: Path, base_url: str) -> dict[str, str]:
    home = tmp_path / "codex-home"
    home.mkdir(exist_ok=True)
    (home / "config.toml").write_text(f'openai_base_url = "{base_url}"\n')
    return {"CODEX_HOME": str(home), "OPENAI_BASE_URL": "http://127.0.0.1:9/ignored-by-codex"}


@pytest.fixture
def sink() -> RecordingSink:
    return RecordingSink()


@pytest.fixture
def proxy(fake: FakeResponses, sink: RecordingSink, tmp_path: Path) -> Iterator[RunningProxy]:
    p = start_proxy(sink, OpenGate(), Pricer(), codex_env(tmp_path, fake.url))
    yield p
    p.stop()


def request(proxy: RunningProxy, method: str, path: str, body: object = None,
            headers: dict[str, str] | None = None) -> tuple[int, bytes, dict[str, str]]:
    url = urlsplit(proxy.client_env("codex")["GUARD_PROXY_URL"] + "/openai")
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    conn.request(method, url.path + path, body=None if body is None else json.dumps(body),
                 headers={"Authorization": "Bearer sk-test", "Content-Type": "application/json", **(headers or {})})
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp.status, data, {k.lower(): v for k, v in resp.getheaders()}


def test_forwards_where_codex_config_points_and_keys_by_response_id(
        proxy: RunningProxy, fake: FakeResponses, sink: RecordingSink) -> None:
    status, data, _ = request(proxy, "POST", "/responses", BODY)
    assert status == 200 and b"response.completed" in data
    assert sink.wait_events(1)
    (served,) = fake.completed()
    (ev,) = sink.events
    assert ev.key == openai_wire.response_key(served.response_id)
    bill = fake.bill()
    assert (ev.input_tokens, ev.cache_read_tokens, ev.cache_write_tokens, ev.output_tokens) == (
        bill["input_tokens"], bill["cache_read_tokens"], bill["cache_write_tokens"], bill["output_tokens"])
    assert ev.cache_write_tokens == 2_000 and not ev.estimated
    assert ev.steps == 1        # a Codex step is a response, even when Codex is killed before its record


def test_codex_arguments_choose_the_upstream(fake: FakeResponses, sink: RecordingSink, tmp_path: Path) -> None:
    # the config points at a dead port; Codex's own -c on its command line points at the fake
    p = start_proxy(sink, OpenGate(), Pricer(), codex_env(tmp_path, "http://127.0.0.1:9/v1"))
    try:
        assert p.client_args("codex", ["exec", "-c", f"openai_base_url={fake.url}", "hi"]) == []
        status, _, _ = request(p, "POST", "/responses", BODY)
    finally:
        p.stop()
    assert status == 200 and len(fake.completed()) == 1


def test_the_websocket_attempt_is_refused_at_once_without_reaching_upstream(
        proxy: RunningProxy, fake: FakeResponses) -> None:
    status, data, _ = request(proxy, "GET", "/responses", headers={
        "Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="})
    assert status == 426                  # Codex falls back to HTTP on the first 426
    assert "WebSockets are not proxied" in json.loads(data)["error"]["message"]
    assert fake.gets == []


def test_a_refusal_is_a_400_codex_does_not_retry(fake: FakeResponses, tmp_path: Path) -> None:
    gate = CeilingGate(limit_usd=0.0, pricer=Pricer())
    p = start_proxy(gate.sink, gate, Pricer(), codex_env(tmp_path, fake.url))
    try:
        status, data, headers = request(p, "POST", "/responses", BODY)
    finally:
        p.stop()
    assert status == 400 and headers["x-should-retry"] == "false"
    assert json.loads(data)["error"]["code"] == "guard_budget_exceeded"
    assert fake.requests == []


def test_responses_usage_with_cache_writes_from_a_stream_and_a_body() -> None:
    usage = {"input_tokens": 1000, "input_tokens_details": {"cached_tokens": 300, "cache_write_tokens": 200},
             "output_tokens": 40, "output_tokens_details": {"reasoning_tokens": 10}}
    done = {"type": "response.completed", "response": {"id": "resp_x", "model": "gpt-5", "usage": usage}}
    reader = openai_wire.StreamReader("responses")
    reader.feed(f"event: response.completed\ndata: {json.dumps(done)}\n\n".encode())
    for u in (reader.result(True), openai_wire.usage_from_body(done["response"], "responses")):
        assert (u.input_tokens, u.cache_read_tokens, u.cache_write_tokens, u.output_tokens) == (500, 300, 200, 40)
        assert u.key == "resp:resp_x"
    # more cache than input (a broken count) never makes input negative
    odd = openai_wire.usage_from_body({"id": "r", "usage": {"input_tokens": 10, "input_tokens_details": {
        "cached_tokens": 8, "cache_write_tokens": 9}, "output_tokens": 1}}, "responses")
    assert (odd.input_tokens, odd.cache_read_tokens, odd.cache_write_tokens) == (0, 8, 2)


def test_only_responses_are_keyed_by_response_id_and_compaction_is_metered() -> None:
    assert openai_wire.usage_from_body({"id": "chatcmpl-1", "usage": {"prompt_tokens": 5}}, "chat").key is None
    assert openai_wire.metered_kind("POST", "/v1/responses/compact") == "responses"
    assert openai_wire.metered_kind("GET", "/v1/responses") is None

