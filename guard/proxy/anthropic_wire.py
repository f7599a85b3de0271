"""Anthropic Messages API: estimate a request, read the usage of a response (SSE or JSON)."""
from __future__ import annotations

import json
from typing import Any

from guard.proxy.wire import (
    DEFAULT_MAX_OUTPUT_TOKENS,
    Estimate,
    MarkerEvents,
    StreamedOutput,
    WireUsage,
    content_bytes,
    estimate_input_tokens,
    int_field,
    load_json,
    output_tokens_for,
    sse_data,
)


def is_metered(method: str, path: str) -> bool:
    """POST .../v1/messages bills tokens; count_tokens, models, batches listing do not."""
    return method == "POST" and path.split("?", 1)[0].rstrip("/").endswith("/v1/messages")


def estimate(body: bytes, obj: Any) -> Estimate:
    req = obj if isinstance(obj, dict) else {}
    model = req.get("model") if isinstance(req.get("model"), str) else None
    max_out = int_field(req, "max_tokens") or DEFAULT_MAX_OUTPUT_TOKENS
    factor = 1.0
    if b"cache_control" in body:
        # A cache write costs 1.25x input (5-minute) or 2x (1-hour) instead of 1x.
        factor = 2.0 if b'"1h"' in body else 1.25
    return Estimate(model, estimate_input_tokens(body, model), max_out, factor, bool(req.get("stream")),
                    int_field(req.get("thinking"), "budget_tokens"))


def apply_usage(u: WireUsage, usage: Any) -> None:
    """Anthropic usage fields into `u`; later reports (message_delta) override earlier ones
    field by field, since message_delta carries the final cumulative counts."""
    if not isinstance(usage, dict):
        return
    for src, dst in (
        ("input_tokens", "input_tokens"),
        ("output_tokens", "output_tokens"),
        ("cache_creation_input_tokens", "cache_write_tokens"),
        ("cache_read_input_tokens", "cache_read_tokens"),
    ):
        v = int_field(usage, src)
        if v is not None:
            setattr(u, dst, v)
            u.fields.add(dst)
    cc = usage.get("cache_creation")
    v = int_field(cc, "ephemeral_1h_input_tokens")
    if v is not None:
        u.cache_write_1h_tokens = v
        u.fields.add("cache_write_1h_tokens")


def usage_from_message(obj: Any) -> WireUsage:
    """A non-streaming response body (or an error body, which has no usage)."""
    u = WireUsage()
    if isinstance(obj, dict):
        if isinstance(obj.get("id"), str):
            u.message_id = obj["id"]
        if isinstance(obj.get("model"), str):
            u.model = obj["model"]
        apply_usage(u, obj.get("usage"))
        if "output_tokens" not in u.fields:
            u.output_estimate = output_tokens_for(content_bytes(json.dumps(obj.get("content")).encode()))
    return u


class StreamReader:
    """Follows a Messages SSE stream: usage from message_start, then message_delta."""

    def __init__(self) -> None:
        self.usage = WireUsage()
        self._events = MarkerEvents((b"message_start", b"message_delta"))
        self._out = StreamedOutput()
        self._final = False

    def feed(self, data: bytes) -> None:
        self._out.feed(data)
        for ev in self._events.feed(data):
            self._event(ev)

    def _event(self, ev: bytes) -> None:
        obj = load_json(sse_data(ev))
        if not isinstance(obj, dict):
            return
        kind = obj.get("type")
        if kind == "message_start":
            # Not output: keep its bytes out of the output estimate.
            self._out.bytes -= len(ev)
            self._out.events -= 1
            msg = obj.get("message")
            if isinstance(msg, dict):
                if isinstance(msg.get("id"), str):
                    self.usage.message_id = msg["id"]
                if isinstance(msg.get("model"), str):
                    self.usage.model = msg["model"]
                apply_usage(self.usage, msg.get("usage"))
        elif kind == "message_delta":
            apply_usage(self.usage, obj.get("usage"))
            self._final = True

    def result(self, complete: bool) -> WireUsage:
        u = self.usage
        u.output_estimate = self._out.tokens()
        if not self._final:
            # Cut before message_delta (or a stream without usage): the input side is exact when
            # message_start came; the output is estimated from the text and tool input streamed.
            u.partial = True
            u.output_tokens = max(u.output_tokens, u.output_estimate)
        return u


def error_body(kind: str, message: str) -> bytes:
    return json.dumps({"type": "error", "error": {"type": kind, "message": message}}).encode()
