"""OpenAI Chat Completions, legacy Completions, Responses and Embeddings: estimate a request, ask
a stream for its usage, read the usage of a response. OpenAI counts cached and cache-written
tokens INSIDE the prompt/input tokens; guard's convention excludes them, so they are subtracted
here. A Responses API response is keyed by its id (`response_key`), as Codex's rollouts name it."""
from __future__ import annotations

import json
from typing import Any, Literal

from guard.proxy.wire import (
    DEFAULT_MAX_OUTPUT_TOKENS,
    Estimate,
    MarkerEvents,
    SSESplitter,
    StreamedOutput,
    WireUsage,
    content_bytes,
    estimate_input_tokens,
    int_field,
    load_json,
    output_tokens_for,
    sse_data,
)

Kind = Literal["chat", "completions", "responses", "embeddings"]


def metered_kind(method: str, path: str) -> Kind | None:
    if method != "POST":
        return None
    p = path.split("?", 1)[0].rstrip("/")
    if p.endswith("/chat/completions"):
        return "chat"
    if p.endswith("/completions"):
        return "completions"
    if p.endswith("/responses") or p.endswith("/responses/compact"):
        return "responses"
    if p.endswith("/embeddings"):
        return "embeddings"
    return None


def response_key(response_id: str) -> str:
    """The idempotency key of one Responses API response, the same for every source that sees it:
    the proxy reads the id from the stream, Codex writes it in its rollouts' token_usage_record."""
    return f"resp:{response_id}"


def estimate(body: bytes, obj: Any, kind: Kind) -> Estimate:
    req = obj if isinstance(obj, dict) else {}
    model = req.get("model") if isinstance(req.get("model"), str) else None
    if kind == "embeddings":
        max_out = 0
    elif kind == "responses":
        max_out = int_field(req, "max_output_tokens") or DEFAULT_MAX_OUTPUT_TOKENS
    else:
        max_out = (int_field(req, "max_completion_tokens") or int_field(req, "max_tokens")
                   or DEFAULT_MAX_OUTPUT_TOKENS)
        max_out *= max(1, int_field(req, "n") or 1)   # n choices: n outputs billed
    return Estimate(model, estimate_input_tokens(body, model), max_out, 1.0, bool(req.get("stream")))


def ask_stream_usage(obj: Any, kind: Kind) -> bytes | None:
    """The request body rewritten to carry stream_options.include_usage, or None when the
    request already gets its usage (not a stream, Responses API, or the client asked)."""
    if kind not in ("chat", "completions") or not isinstance(obj, dict) or not obj.get("stream"):
        return None
    opts = obj.get("stream_options")
    if isinstance(opts, dict) and opts.get("include_usage"):
        return None
    new = dict(obj)
    new["stream_options"] = {**(opts if isinstance(opts, dict) else {}), "include_usage": True}
    return json.dumps(new, separators=(",", ":"), ensure_ascii=False).encode()


def apply_usage(u: WireUsage, usage: Any, kind: Kind) -> None:
    if not isinstance(usage, dict):
        return
    if kind == "responses":
        total_in = int_field(usage, "input_tokens")
        details = usage.get("input_tokens_details")
        out = int_field(usage, "output_tokens")
    else:
        total_in = int_field(usage, "prompt_tokens")
        details = usage.get("prompt_tokens_details")
        out = int_field(usage, "completion_tokens")
        if kind == "embeddings" and out is None:
            out = 0
    if total_in is not None:
        cached = min(int_field(details, "cached_tokens") or 0, total_in)
        written = min(int_field(details, "cache_write_tokens") or 0, total_in - cached)
        u.input_tokens = total_in - cached - written
        u.cache_read_tokens = cached
        u.cache_write_tokens = written
        u.fields.update(("input_tokens", "cache_read_tokens", "cache_write_tokens"))
    if out is not None:
        # completion/output tokens already include reasoning tokens.
        u.output_tokens = out
        u.fields.add("output_tokens")


def usage_from_body(obj: Any, kind: Kind) -> WireUsage:
    u = WireUsage()
    if isinstance(obj, dict):
        _ids(u, obj, kind)
        apply_usage(u, obj.get("usage"), kind)
        if "output_tokens" not in u.fields:
            out = obj.get("output") if kind == "responses" else obj.get("choices")
            u.output_estimate = output_tokens_for(content_bytes(json.dumps(out).encode()))
    return u


def _ids(u: WireUsage, obj: dict[str, Any], kind: Kind) -> None:
    if isinstance(obj.get("id"), str) and obj["id"] and not u.message_id:
        u.message_id = obj["id"]
        if kind == "responses":
            u.key = response_key(obj["id"])
    if isinstance(obj.get("model"), str):
        u.model = obj["model"]


_RESPONSE_END = (b"response.completed", b"response.incomplete", b"response.failed")


_CHAT_USAGE = (b'"usage":{', b'"usage": {')


class StreamReader:
    """Follows an OpenAI SSE stream. With strip_usage_chunk (guard asked for the usage, the
    client did not), `filter` drops the final usage-only chunk so the client sees what it asked for."""

    def __init__(self, kind: Kind, strip_usage_chunk: bool = False) -> None:
        self.kind = kind
        self.strip = strip_usage_chunk
        self.usage = WireUsage()
        self._sse = SSESplitter()
        self._events = MarkerEvents((b"response.created", *_RESPONSE_END) if kind == "responses" else _CHAT_USAGE)
        self._out = StreamedOutput()

    def feed(self, data: bytes) -> None:
        self._out.feed(data)
        for ev in self._events.feed(data):
            self._event(ev)

    def filter(self, data: bytes) -> bytes:
        """Feed raw (uncompressed) bytes; return what the client should get now."""
        self._out.feed(data)
        out = []
        for ev in self._sse.feed(data):
            if self._event(ev):
                out.append(ev)
        return b"".join(out)

    def flush(self) -> bytes:
        rest = self._sse.rest()
        if rest.strip():
            return rest if self._event(rest) else b""
        return rest

    def _event(self, ev: bytes) -> bool:
        """Read one event; False when it must not reach the client."""
        if self.kind == "responses":
            if b"response.created" in ev or any(k in ev for k in _RESPONSE_END):
                obj = load_json(sse_data(ev))
                if isinstance(obj, dict) and isinstance(obj.get("response"), dict):
                    resp = obj["response"]
                    _ids(self.usage, resp, self.kind)
                    apply_usage(self.usage, resp.get("usage"), self.kind)
            return True
        if not any(m in ev for m in _CHAT_USAGE):
            return True
        obj = load_json(sse_data(ev))
        if not isinstance(obj, dict):
            return True
        _ids(self.usage, obj, self.kind)
        apply_usage(self.usage, obj.get("usage"), self.kind)
        usage_only = obj.get("choices") == [] and isinstance(obj.get("usage"), dict)
        return not (self.strip and usage_only)

    def result(self, complete: bool) -> WireUsage:
        u = self.usage
        u.output_estimate = self._out.tokens()
        if "output_tokens" not in u.fields:
            u.partial = True
            # Cut (or a server that ignores include_usage): estimate the output from the text
            # and tool-call arguments streamed.
            u.output_tokens = max(u.output_tokens, u.output_estimate)
        return u


def error_body(kind: str, message: str, code: str | None = None) -> bytes:
    return json.dumps({"error": {"message": message, "type": kind, "param": None, "code": code}}).encode()
