"""The proxy against hostile or broken clients: unauthenticated bodies never read, oversized
bodies refused, slow and idle connections dropped (never a streaming one), malformed requests
answered with a well-formed error."""
from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator

import anthropic
import pytest

import guard.proxy.server as server
from guard.pricing import Pricer
from guard.proxy import OpenGate, RunningProxy, start_proxy
from tests.fakes.anthropic_server import FakeAnthropic, Text, reply
from tests.fakes.proxy_upstreams import RecordingSink
from tests.helpers import wait_until

pytestmark = pytest.mark.e2e
MODEL = "claude-sonnet-4-6"


@pytest.fixture
def fake() -> Iterator[FakeAnthropic]:
    with FakeAnthropic(script=lambda req: reply(Text("a b c d e f"), chunk_delay=0.6)) as f:
        yield f


@pytest.fixture
def proxy(fake: FakeAnthropic, monkeypatch: pytest.MonkeyPatch) -> Iterator[RunningProxy]:
    monkeypatch.setattr(server, "HEADER_TIMEOUT", 1.0)
    monkeypatch.setattr(server, "IDLE_TIMEOUT", 1.5)
    p = start_proxy(RecordingSink(), OpenGate(), Pricer(), {"ANTHROPIC_BASE_URL": fake.url})
    yield p
    p.stop()


def connect(proxy: RunningProxy) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", proxy.port), timeout=30)
    return s


def response(s: socket.socket) -> tuple[int, dict]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(next(ln.split(b":")[1] for ln in head.split(b"\r\n") if ln.lower().startswith(b"content-length")))
    while len(body) < length:
        body += s.recv(65536)
    return int(head.split()[1]), json.loads(body)


def closed(s: socket.socket) -> bool:
    try:
        return s.recv(1) == b""
    except OSError:
        return True


def test_an_unauthenticated_request_is_refused_before_its_body(proxy):
    s = connect(proxy)
    # claims 300 MB and sends none of it: an answer proves the proxy did not wait for the body
    s.sendall(b"POST /wrong-secret/run/anthropic/v1/messages HTTP/1.1\r\nHost: x\r\n"
              b"Content-Length: 300000000\r\n\r\n")
    status, body = response(s)
    assert status == 403 and body["type"] == "error"
    assert closed(s)


def test_a_body_above_32_mib_is_refused_unread(proxy):
    s = connect(proxy)
    path = proxy.url.split(str(proxy.port), 1)[1] + "/run/anthropic/v1/messages"
    s.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {33 << 20}\r\n\r\n".encode())
    status, body = response(s)
    assert status == 413 and body["error"]["type"] == "request_too_large"


def test_a_connection_without_complete_headers_is_dropped(proxy):
    s = connect(proxy)
    s.sendall(b"POST /x HTTP/1.1\r\nHost: x\r\n")  # never finishes its headers
    s.settimeout(30)
    assert closed(s)


def test_an_idle_keep_alive_connection_is_dropped_but_a_slow_stream_is_not(proxy, fake):
    client = anthropic.Anthropic(base_url=proxy.client_env("run")["ANTHROPIC_BASE_URL"], api_key="k",
                                 max_retries=0)
    t0 = time.monotonic()
    with client.messages.stream(model=MODEL, max_tokens=4096, messages=[{"role": "user", "content": "hi"}]) as st:
        text = "".join(st.text_stream)
    # the stream lasted longer than both timeouts and came through whole
    assert text == "a b c d e f" and time.monotonic() - t0 > server.IDLE_TIMEOUT
    s = connect(proxy)
    s.settimeout(30)
    assert closed(s)  # idle from the start: dropped at the header deadline


@pytest.mark.parametrize("payload", [
    b'{"model": "claude-sonnet-4-6", "max_tokens": 1e999, "messages": [{"role": "user", "content": "hi"}]}',
    b'{"model": ' + b"[" * 5000 + b"]" * 5000 + b'}',
    b"\xff\xfe not json",
])
def test_a_malformed_request_gets_a_well_formed_error(proxy, payload):
    s = connect(proxy)
    path = proxy.url.split(str(proxy.port), 1)[1] + "/run/anthropic/v1/messages"
    s.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              f"Content-Length: {len(payload)}\r\n\r\n".encode() + payload)
    status, body = response(s)
    assert 400 <= status < 600 and body["type"] == "error" and body["error"]["message"]


def test_two_hundred_slow_connections_do_not_stay(proxy):
    import threading

    socks = [connect(proxy) for _ in range(200)]
    for s in socks:
        s.sendall(b"GET / HTTP/1.1\r\n")
    wait_until(lambda: all(closed(s) for s in socks), timeout=60, message="slow connections to be dropped")
    wait_until(lambda: sum(t.name.startswith("Thread") for t in threading.enumerate()) < 20, timeout=30,
               message="their threads to end")
