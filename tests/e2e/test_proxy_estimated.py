"""Honest accuracy: a response without the provider's usage (none sent, stream cut, client gone)
is recorded from the request and the streamed text, and flagged estimated; one with it is exact."""
from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

from guard.pricing import Pricer
from guard.proxy import OpenGate, RunningProxy, start_proxy
from guard.proxy.anthropic_wire import estimate as anthropic_estimate
from guard.usage import UsageEvent
from tests.fakes.anthropic_server import FakeAnthropic, Text, ToolUse, Usage, reply
from tests.fakes.openai_server import FakeOpenAI, Reply
from tests.fakes.openai_server import Usage as OAUsage
from tests.fakes.proxy_upstreams import RecordingSink

pytestmark = pytest.mark.e2e

MODEL = "claude-sonnet-4-6"
TEXT = "The quick brown fox jumps over the lazy dog. " * 60          # 2,700 characters
TOOL = {"command": "grep -rn 'needle' src/ | head -50", "description": "search"}
# Billed output for TEXT (plus the tool call) by any real tokenizer: 3.5-4.5 characters a token.
TRUE_OUT = len(TEXT) // 4


def out_ok(ev: UsageEvent, max_tokens: int) -> None:
    # an estimate on the high side of the truth, never above the request's own cap
    assert TRUE_OUT <= ev.output_tokens <= min(max_tokens, 2 * TRUE_OUT), ev.output_tokens


@pytest.fixture
def sink() -> RecordingSink:
    return RecordingSink()


@pytest.fixture
def anthropic_fake() -> Iterator[FakeAnthropic]:
    with FakeAnthropic(usage=lambda n: Usage(input_tokens=900, output_tokens=700, cache_read=5000)) as f:
        yield f


def call(proxy: RunningProxy, path: str, body: dict[str, Any], env_key: str) -> bytes:
    url = urlsplit(proxy.client_env("run")[env_key])
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    conn.request("POST", url.path + path, body=json.dumps(body),
                 headers={"x-api-key": "k", "authorization": "Bearer k", "content-type": "application/json"})
    resp = conn.getresponse()
    try:
        return resp.read()
    except http.client.IncompleteRead as e:   # the upstream dropped the stream
        return e.partial
    finally:
        conn.close()


def messages_body(stream: bool, max_tokens: int = 4000) -> dict[str, Any]:
    return {"model": MODEL, "max_tokens": max_tokens, "stream": stream,
            "messages": [{"role": "user", "content": "write a lot " * 200}]}


@pytest.fixture
def a_proxy(anthropic_fake: FakeAnthropic, sink: RecordingSink) -> Iterator[RunningProxy]:
    p = start_proxy(sink, OpenGate(), Pricer(), {"ANTHROPIC_BASE_URL": anthropic_fake.url})
    yield p
    p.stop()


def test_full_usage_is_exact(anthropic_fake: FakeAnthropic, sink: RecordingSink, a_proxy: RunningProxy) -> None:
    anthropic_fake.script = lambda req: reply(Text(TEXT))
    call(a_proxy, "/v1/messages", messages_body(True), "ANTHROPIC_BASE_URL")
    assert sink.wait_events(1)
    ev = sink.events[0]
    assert not ev.estimated and (ev.input_tokens, ev.output_tokens, ev.cache_read_tokens) == (900, 700, 5000)


@pytest.mark.parametrize("stream", [True, False])
def test_anthropic_without_usage_is_estimated(anthropic_fake: FakeAnthropic, sink: RecordingSink,
                                             a_proxy: RunningProxy, stream: bool) -> None:
    anthropic_fake.script = lambda req: reply(Text(TEXT), ToolUse("Bash", TOOL), omit_usage=True)
    body = messages_body(stream)
    call(a_proxy, "/v1/messages", body, "ANTHROPIC_BASE_URL")
    assert sink.wait_events(1)
    ev = sink.events[0]
    assert ev.estimated and not ev.interrupted
    assert ev.input_tokens == anthropic_estimate(json.dumps(body).encode(), body).input_tokens
    out_ok(ev, 4000)


def test_anthropic_stream_cut_by_the_upstream_is_estimated(anthropic_fake: FakeAnthropic, sink: RecordingSink,
                                                          a_proxy: RunningProxy) -> None:
    # message_start, the text block (start, delta, stop), then the connection drops
    anthropic_fake.script = lambda req: reply(Text(TEXT), ToolUse("Bash", TOOL), cut_after=4)
    call(a_proxy, "/v1/messages", messages_body(True), "ANTHROPIC_BASE_URL")
    assert sink.wait_events(1)
    ev = sink.events[0]
    assert ev.estimated and ev.interrupted
    assert (ev.input_tokens, ev.cache_read_tokens) == (900, 5000)   # message_start's own count
    out_ok(ev, 4000)


def test_anthropic_estimate_never_passes_max_tokens(anthropic_fake: FakeAnthropic, sink: RecordingSink,
                                                    a_proxy: RunningProxy) -> None:
    anthropic_fake.script = lambda req: reply(Text(TEXT * 4), omit_usage=True)
    call(a_proxy, "/v1/messages", messages_body(True, max_tokens=300), "ANTHROPIC_BASE_URL")
    assert sink.wait_events(1)
    assert sink.events[0].estimated and sink.events[0].output_tokens == 300


def test_anthropic_client_gone_mid_stream_is_estimated(anthropic_fake: FakeAnthropic, sink: RecordingSink,
                                                       a_proxy: RunningProxy) -> None:
    anthropic_fake.script = lambda req: reply(*[Text(TEXT) for _ in range(30)], chunk_delay=0.05)
    url = urlsplit(a_proxy.client_env("claude")["ANTHROPIC_BASE_URL"])
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    conn.request("POST", url.path + "/v1/messages", body=json.dumps(messages_body(True)),
                 headers={"x-api-key": "k", "content-type": "application/json"})
    resp = conn.getresponse()
    seen = b""
    while seen.count(b"text_delta") < 2:
        seen += resp.read1(4096)
    conn.sock.close()
    conn.close()
    assert sink.wait_events(1)
    ev = sink.events[0]
    assert ev.estimated and ev.interrupted
    assert ev.input_tokens == 900
    # at least the text the client was sent (two deltas), at most the request's cap
    assert 2 * TRUE_OUT <= ev.output_tokens <= 4000


# -- OpenAI --------------------------------------------------------------------------------


@pytest.fixture
def openai_fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(usage=lambda req: OAUsage(prompt_tokens=1200, completion_tokens=700, cached_tokens=200),
                    aux=None) as f:
        yield f


@pytest.fixture
def o_proxy(openai_fake: FakeOpenAI, sink: RecordingSink) -> Iterator[RunningProxy]:
    p = start_proxy(sink, OpenGate(), Pricer(), {"OPENAI_BASE_URL": openai_fake.url})
    yield p
    p.stop()


def chat_body(stream: bool) -> dict[str, Any]:
    return {"model": "gpt-4o", "max_tokens": 4000, "stream": stream,
            "messages": [{"role": "user", "content": "write a lot " * 200}]}


@pytest.mark.parametrize("stream", [True, False])
def test_openai_without_usage_is_estimated(openai_fake: FakeOpenAI, sink: RecordingSink, o_proxy: RunningProxy,
                                          stream: bool) -> None:
    openai_fake.script = lambda req: Reply(text=TEXT, chunks=60, omit_usage=True)
    call(o_proxy, "/chat/completions", chat_body(stream), "OPENAI_BASE_URL")
    assert sink.wait_events(1)
    ev = sink.events[0]
    assert ev.estimated
    out_ok(ev, 4000)


def test_openai_with_usage_is_exact(openai_fake: FakeOpenAI, sink: RecordingSink, o_proxy: RunningProxy) -> None:
    openai_fake.script = lambda req: Reply(text=TEXT, chunks=60)
    call(o_proxy, "/chat/completions", chat_body(True), "OPENAI_BASE_URL")
    assert sink.wait_events(1)
    ev = sink.events[0]
    assert not ev.estimated and (ev.input_tokens, ev.cache_read_tokens, ev.output_tokens) == (1000, 200, 700)


def test_openai_stream_cut_is_estimated(openai_fake: FakeOpenAI, sink: RecordingSink, o_proxy: RunningProxy) -> None:
    openai_fake.script = lambda req: Reply(text=TEXT, chunks=60, cut_after=31)   # role chunk + 30 pieces
    call(o_proxy, "/chat/completions", chat_body(True), "OPENAI_BASE_URL")
    assert sink.wait_events(1)
    ev = sink.events[0]
    assert ev.estimated and ev.interrupted
    assert TRUE_OUT // 2 <= ev.output_tokens <= TRUE_OUT
