"""Usage extraction and request estimation of the metering proxy's wire formats."""
from __future__ import annotations

import gzip
import json

import pytest

from guard.proxy import anthropic_wire, openai_wire
from guard.proxy.wire import SideDecoder, SSESplitter, estimate_input_tokens, readable_accept_encoding


def sse(events: list[dict], named: bool = True) -> bytes:
    out = b""
    for e in events:
        head = f"event: {e['type']}\n" if named and "type" in e else ""
        out += f"{head}data: {json.dumps(e)}\n\n".encode()
    return out


ANTHROPIC_USAGE_START = {
    "input_tokens": 1234, "output_tokens": 1, "cache_creation_input_tokens": 700,
    "cache_read_input_tokens": 5000,
    "cache_creation": {"ephemeral_5m_input_tokens": 300, "ephemeral_1h_input_tokens": 400},
}


def anthropic_stream(final_usage: dict) -> bytes:
    return sse([
        {"type": "message_start", "message": {"id": "msg_1", "model": "claude-sonnet-4-5",
                                               "usage": ANTHROPIC_USAGE_START}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hello there"}},
        {"type": "content_block_stop", "index": 0},
        {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": final_usage},
        {"type": "message_stop"},
    ])


@pytest.mark.parametrize("step", [1, 7, 64, 100_000])
def test_anthropic_stream_usage_survives_any_chunking(step: int) -> None:
    data = anthropic_stream({**ANTHROPIC_USAGE_START, "output_tokens": 321})
    r = anthropic_wire.StreamReader()
    for i in range(0, len(data), step):
        r.feed(data[i:i + step])
    u = r.result(complete=True)
    assert (u.input_tokens, u.output_tokens, u.cache_write_tokens, u.cache_write_1h_tokens,
            u.cache_read_tokens) == (1234, 321, 700, 400, 5000)
    assert u.message_id == "msg_1" and u.model == "claude-sonnet-4-5" and not u.partial


def test_anthropic_delta_with_output_only_keeps_input_side_of_message_start() -> None:
    r = anthropic_wire.StreamReader()
    r.feed(anthropic_stream({"output_tokens": 99}))
    u = r.result(complete=True)
    assert (u.input_tokens, u.output_tokens, u.cache_read_tokens) == (1234, 99, 5000)


def test_anthropic_stream_cut_before_message_delta_is_partial_with_exact_input() -> None:
    data = anthropic_stream({"output_tokens": 99})
    cut = data[: data.index(b"event: content_block_stop")]
    r = anthropic_wire.StreamReader()
    r.feed(cut)
    u = r.result(complete=False)
    assert u.partial and u.input_tokens == 1234 and u.cache_read_tokens == 5000
    assert u.output_tokens >= 1


def test_anthropic_crlf_events() -> None:
    data = anthropic_stream({"output_tokens": 5}).replace(b"\n", b"\r\n")
    r = anthropic_wire.StreamReader()
    r.feed(data)
    assert r.result(True).output_tokens == 5


def test_anthropic_non_stream_body_and_error_body() -> None:
    body = {"id": "msg_2", "model": "claude-haiku-4-5", "usage": {**ANTHROPIC_USAGE_START, "output_tokens": 8}}
    u = anthropic_wire.usage_from_message(body)
    assert (u.input_tokens, u.output_tokens, u.cache_write_1h_tokens) == (1234, 8, 400)
    err = anthropic_wire.usage_from_message(json.loads(anthropic_wire.error_body("api_error", "x")))
    assert not err.seen


def test_anthropic_metered_paths() -> None:
    assert anthropic_wire.is_metered("POST", "/v1/messages?beta=true")
    assert not anthropic_wire.is_metered("POST", "/v1/messages/count_tokens")
    assert not anthropic_wire.is_metered("HEAD", "/v1/messages")


def test_anthropic_estimate_reads_max_tokens_model_and_cache_writes() -> None:
    req = {"model": "claude-opus-4-1", "max_tokens": 2000, "stream": True,
           "system": [{"type": "text", "text": "x" * 3000, "cache_control": {"type": "ephemeral", "ttl": "1h"}}],
           "messages": [{"role": "user", "content": "hi"}]}
    body = json.dumps(req).encode()
    est = anthropic_wire.estimate(body, req)
    assert est.model == "claude-opus-4-1" and est.max_output_tokens == 2000 and est.stream
    assert est.cache_write_factor == 2.0
    assert est.input_tokens >= 1000          # 3,000 chars of text can't be fewer than ~750 tokens
    del req["system"][0]["cache_control"]
    assert anthropic_wire.estimate(json.dumps(req).encode(), req).cache_write_factor == 1.0


def test_estimate_counts_base64_images_at_their_billed_size() -> None:
    img = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "A" * 3_000_000}}
    body = json.dumps({"messages": [{"role": "user", "content": [img]}]}).encode()
    assert estimate_input_tokens(body) < 2_000    # not 1,000,000 tokens for 3 MB of base64


CHAT_USAGE = {"prompt_tokens": 12000, "completion_tokens": 450, "total_tokens": 12450,
              "prompt_tokens_details": {"cached_tokens": 8000},
              "completion_tokens_details": {"reasoning_tokens": 200}}


def chat_stream(include_usage: bool) -> bytes:
    base = {"id": "chatcmpl-9", "object": "chat.completion.chunk", "model": "gpt-4o"}
    extra = {"usage": None} if include_usage else {}
    events = [base | {"choices": [{"index": 0, "delta": {"content": w}}]} | extra for w in ("Hel", "lo")]
    events.append(base | {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]} | extra)
    if include_usage:
        events.append(base | {"choices": [], "usage": CHAT_USAGE})
    return sse(events, named=False) + b"data: [DONE]\n\n"


def test_openai_chat_stream_usage_converts_cached_tokens_out_of_input() -> None:
    r = openai_wire.StreamReader("chat")
    r.feed(chat_stream(True))
    u = r.result(True)
    # guard's convention: input EXCLUDES cache reads; completion tokens include reasoning.
    assert (u.input_tokens, u.cache_read_tokens, u.output_tokens) == (4000, 8000, 450)
    assert u.message_id == "chatcmpl-9" and not u.partial


@pytest.mark.parametrize("step", [1, 13, 100_000])
def test_openai_strip_drops_only_the_usage_chunk(step: int) -> None:
    data = chat_stream(True)
    r = openai_wire.StreamReader("chat", strip_usage_chunk=True)
    out = b"".join(r.filter(data[i:i + step]) for i in range(0, len(data), step)) + r.flush()
    assert b'"choices": []' not in out and b"[DONE]" in out and b"Hel" in out
    assert out == data.replace(sse([json.loads(x) for x in [json.dumps(
        {"id": "chatcmpl-9", "object": "chat.completion.chunk", "model": "gpt-4o",
         "choices": [], "usage": CHAT_USAGE})]], named=False), b"")
    assert r.result(True).output_tokens == 450


def test_openai_stream_without_usage_is_partial_estimate() -> None:
    r = openai_wire.StreamReader("chat")
    r.feed(chat_stream(False))
    u = r.result(True)
    assert u.partial and "input_tokens" not in u.fields


def test_ask_stream_usage_only_when_missing() -> None:
    req = {"model": "gpt-4o", "stream": True, "messages": []}
    new = json.loads(openai_wire.ask_stream_usage(req, "chat") or b"null")
    assert new["stream_options"] == {"include_usage": True} and new["messages"] == []
    assert openai_wire.ask_stream_usage({**req, "stream_options": {"include_usage": True}}, "chat") is None
    assert openai_wire.ask_stream_usage({**req, "stream": False}, "chat") is None
    assert openai_wire.ask_stream_usage(req, "responses") is None


def test_openai_responses_stream_and_body() -> None:
    usage = {"input_tokens": 900, "input_tokens_details": {"cached_tokens": 100}, "output_tokens": 70,
             "output_tokens_details": {"reasoning_tokens": 50}}
    resp = {"id": "resp_1", "model": "gpt-5", "usage": usage}
    data = sse([{"type": "response.created", "response": {"id": "resp_1", "model": "gpt-5", "usage": None}},
                {"type": "response.output_text.delta", "delta": "hi"},
                {"type": "response.completed", "response": resp}])
    r = openai_wire.StreamReader("responses")
    r.feed(data)
    u = r.result(True)
    assert (u.input_tokens, u.cache_read_tokens, u.output_tokens, u.message_id) == (800, 100, 70, "resp_1")
    b = openai_wire.usage_from_body(resp, "responses")
    assert (b.input_tokens, b.cache_read_tokens, b.output_tokens) == (800, 100, 70)


def test_openai_chat_body_and_estimate() -> None:
    u = openai_wire.usage_from_body({"id": "c", "model": "gpt-4o", "usage": CHAT_USAGE}, "chat")
    assert (u.input_tokens, u.cache_read_tokens, u.output_tokens) == (4000, 8000, 450)
    req = {"model": "gpt-4o", "max_completion_tokens": 100, "n": 3, "messages": []}
    est = openai_wire.estimate(json.dumps(req).encode(), req, "chat")
    assert est.max_output_tokens == 300
    assert openai_wire.metered_kind("POST", "/v1/chat/completions") == "chat"
    assert openai_wire.metered_kind("POST", "/v1/responses") == "responses"
    assert openai_wire.metered_kind("GET", "/v1/models") is None


def test_sse_splitter_keeps_partial_tail() -> None:
    s = SSESplitter()
    assert s.feed(b"data: 1\n\ndata: 2") == [b"data: 1\n\n"]
    assert s.feed(b"\r\n\r\n") == [b"data: 2\r\n\r\n"]


def test_side_decoder_reads_gzip_copy() -> None:
    raw = gzip.compress(b'{"usage": {"input_tokens": 3}}')
    d = SideDecoder("gzip")
    assert d.decode(raw[:10]) + d.decode(raw[10:]) == b'{"usage": {"input_tokens": 3}}'
    assert not SideDecoder("br").supported
    assert readable_accept_encoding("gzip, deflate, br, zstd") == "gzip, deflate"
    assert readable_accept_encoding("br") == "identity"


def test_marker_scan_finds_usage_around_a_huge_event_in_any_chunking() -> None:
    from guard.proxy.wire import MarkerEvents

    big = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "x" * 300_000}}
    data = anthropic_stream({"output_tokens": 77})
    cut = data.index(b"event: content_block_stop")
    data = data[:cut] + sse([big]) + data[cut:]
    for step in (5, 4096, 65536, len(data)):
        r = anthropic_wire.StreamReader()
        for i in range(0, len(data), step):
            r.feed(data[i:i + step])
        u = r.result(True)
        assert (u.input_tokens, u.output_tokens) == (1234, 77), step
    m = MarkerEvents((b"usage",))
    assert m.feed(b"data: a\n\ndata: usage 1") == []
    assert m.feed(b"\n\n") == [b"data: usage 1\n\n"]


def test_dechunker_recovers_payload_and_end() -> None:
    from guard.proxy.wire import Dechunker

    raw = b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\n"
    for step in (1, 3, len(raw)):
        d = Dechunker()
        out = b"".join(d.feed(raw[i:i + step]) for i in range(0, len(raw), step))
        assert out == b"hello world" and d.done and not d.broken
    bad = Dechunker()
    bad.feed(b"zz\r\n")
    assert bad.broken
