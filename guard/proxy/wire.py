"""What both wire formats share: the usage a response reported, an incremental SSE splitter,
the worst-case estimate of a request, and side decompression of a response copy."""
from __future__ import annotations

import json
import re
import zlib
from dataclasses import dataclass, field
from typing import Any

# A request without an output cap may still produce this many tokens (OpenAI makes the cap
# optional). Generous on purpose: the reservation is an upper bound, released at the end.
DEFAULT_MAX_OUTPUT_TOKENS = 32_768

# Base64 images are billed by pixel count, not by their encoded size: Anthropic caps one image at
# about 1,600 tokens, OpenAI's high-detail tiles stay under that too for normal sizes.
IMAGE_TOKENS = 1_600
_BASE64_DATA = re.compile(rb'"data"\s*:\s*"[A-Za-z0-9+/=]{1024,}"|"url"\s*:\s*"data:image/[^"]{1024,}"')


@dataclass
class WireUsage:
    """One response's usage in guard's convention (input EXCLUDES cache reads and writes)."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_write_tokens: int = 0
    cache_write_1h_tokens: int = 0
    cache_read_tokens: int = 0
    model: str | None = None
    message_id: str | None = None
    key: str | None = None        # the call's idempotency key, when the wire names one all sources share
    # Only part of the truth: the stream was cut before its final usage (output is then estimated).
    partial: bool = False
    fields: set[str] = field(default_factory=set)
    # Output tokens guessed from the text and tool input the response carried, for when the
    # provider's own count never came (none sent, stream cut, client gone).
    output_estimate: int = 0

    @property
    def seen(self) -> bool:
        return bool(self.fields)


@dataclass(frozen=True)
class Estimate:
    """The worst case of a request before it is sent."""

    model: str | None
    input_tokens: int
    max_output_tokens: int
    cache_write_factor: float = 1.0   # >1 when the request asks for cache writes (billed above input)
    stream: bool = False
    thinking_budget: int | None = None  # a manual thinking budget (must stay below max_tokens)
    cache_read_tokens: int = 0        # of input_tokens, predicted cache reads (guard.proxy.cache_predictor)

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.max_output_tokens


# Bytes of request JSON per billed input token, on the low side of what real tokenizers give
# (bench/input_estimate.py measures them on Claude Code's and aider's own requests):
# - the Claude tokenizer up to Opus 4.6 and OpenAI's cl100k/o200k: 4.1-4.2 bytes on Claude Code's
#   requests, 3.5-4.0 on aider's; 3.0 keeps 1.2-1.4x above the count.
# - Opus 4.7's tokenizer yields 1.0-1.35x more tokens (Anthropic), 1.45x measured by users: about
#   2.9 bytes a token on the same requests; 2.5 keeps about 1.15x above. Claude models newer
#   than the ones known to use the old tokenizer are assumed to use the new one.
BYTES_PER_TOKEN = 3.0
BYTES_PER_TOKEN_NEW_CLAUDE = 2.5
_CLAUDE = re.compile(r"claude-(?:(?:opus|sonnet|haiku)-(\d+)(?:-(\d{1,2})(?!\d))?|\d|instant)")


def bytes_per_token(model: str | None) -> float:
    name = (model or "").lower()
    m = _CLAUDE.search(name)
    if m is None:   # not Claude, or a Claude family guard does not know: the new tokenizer
        return BYTES_PER_TOKEN_NEW_CLAUDE if "claude" in name else BYTES_PER_TOKEN
    major, minor = m.group(1), m.group(2)
    if major is None:   # claude-3-5-sonnet, claude-2.1, claude-instant: the old naming
        return BYTES_PER_TOKEN
    old = int(major) < 4 or (int(major) == 4 and int(minor or 0) <= 6)
    return BYTES_PER_TOKEN if old else BYTES_PER_TOKEN_NEW_CLAUDE


def estimate_input_tokens(body: bytes, model: str | None = None) -> int:
    """An upper-bound-leaning guess of a request's input tokens from its JSON size, at the
    model's tokenizer's rate; base64 images are counted at their billed size instead of their
    byte length. Counting the JSON framing too is what keeps it above the billed count."""
    size = len(body)
    images = 0
    for m in _BASE64_DATA.finditer(body):
        size -= len(m.group(0))
        images += 1
    return int(size / bytes_per_token(model)) + images * IMAGE_TOKENS + 16


# Output text is billed at about 3.5-4 bytes per token (English, code, JSON tool input); 3 keeps an
# estimate of unreported output on the high side.
OUTPUT_BYTES_PER_TOKEN = 3
# The string fields that carry generated output in both wire formats (text, thinking, tool input,
# chat content and tool-call arguments, Responses deltas).
# The string body is matched as "unrolled" runs ([^"\\]* between escapes), not one alternation per
# byte: 5x faster on a 2 KB text delta, and it runs on every sampled event of every response.
_CONTENT = re.compile(rb'"(?:text|thinking|partial_json|content|arguments|delta|refusal)"\s*:\s*"([^"\\]*(?:\\.[^"\\]*)*)"')


def content_bytes(data: bytes) -> int:
    """Bytes of generated output (as JSON-escaped) in a response body or SSE events."""
    return sum(m.end(1) - m.start(1) for m in _CONTENT.finditer(data))


def output_tokens_for(nbytes: int) -> int:
    return -(-nbytes // OUTPUT_BYTES_PER_TOKEN)


class StreamedOutput:
    """Estimates a stream's output tokens from its bytes without parsing every event: the first
    events are parsed to learn this stream's framing (the JSON around each delta, the same for
    every delta of one response), then each further event counts as its bytes minus that framing.
    Costs one C-speed count of event separators per block."""

    SAMPLE = 8
    DEFAULT_FRAMING = 80     # the smallest delta event of either API, when none was sampled

    def __init__(self) -> None:
        self.bytes = 0
        self.events = 0
        self._framing: int | None = None
        self._sampled = 0
        self._sample_buf = b""

    def feed(self, data: bytes) -> None:
        self.bytes += len(data)
        self.events += data.count(b"\n\n")
        if self._sampled < self.SAMPLE:
            self._sample(data)

    def _sample(self, data: bytes) -> None:
        buf = self._sample_buf + data
        start = 0
        while self._sampled < self.SAMPLE:
            end = buf.find(b"\n\n", start)
            if end < 0:
                break
            ev = buf[start:end + 2]
            start = end + 2
            content = content_bytes(ev)
            if content:
                self._sampled += 1
                framing = len(ev) - content
                self._framing = framing if self._framing is None else min(self._framing, framing)
        self._sample_buf = buf[start:][-65536:] if self._sampled < self.SAMPLE else b""

    def tokens(self) -> int:
        framing = self._framing if self._framing is not None else self.DEFAULT_FRAMING
        return output_tokens_for(max(0, self.bytes - self.events * framing))


def int_field(obj: Any, name: str) -> int | None:
    if not isinstance(obj, dict):
        return None
    v = obj.get(name)
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return max(0, int(v))


def load_json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None


class SSESplitter:
    """Cuts a byte stream into SSE events (blank-line separated) without waiting for more than
    one event: `feed` returns the complete events seen so far, raw bytes included."""

    def __init__(self) -> None:
        self._buf = b""

    def feed(self, data: bytes) -> list[bytes]:
        old = len(self._buf)
        if old:
            data = self._buf + data
        events: list[bytes] = []
        start = 0
        scan = max(0, old - 3)       # the pending tail was searched already (minus a separator's overlap)
        while True:
            i = data.find(b"\n\n", scan)
            j = data.find(b"\r\n\r\n", scan, i + 2 if i >= 0 else len(data))
            if i < 0 and j < 0:
                break
            end = j + 4 if j >= 0 and (i < 0 or j < i) else i + 2
            events.append(data[start:end])
            start = scan = end
        self._buf = data[start:] if start else data
        return events

    def rest(self) -> bytes:
        out, self._buf = self._buf, b""
        return out


class MarkerEvents:
    """Finds only the SSE events that contain one of `markers` (the usage-bearing ones), with one
    C-speed scan per block instead of splitting every event: a 10 MB stream costs a few ms.
    Assumes a marker sits within `keep` bytes of its event's start (true of every usage event)."""

    def __init__(self, markers: tuple[bytes, ...], keep: int = 8192) -> None:
        import os.path

        self.markers = markers
        self.keep = keep
        # One scan for the markers' common prefix ("message_", "response.", '"usage":'), then a
        # cheap check of which marker (if any) starts there.
        self._probe = os.path.commonprefix(list(markers)) or markers[0]
        self._overlap = max(len(m) for m in markers) - 1
        self._buf = b""
        self._scan = 0
        self._pending = False     # _buf holds the start of a marked event not complete yet

    def _find(self, buf: bytes, pos: int) -> int:
        probe = self._probe
        while True:
            i = buf.find(probe, pos)
            if i < 0:
                if probe is self.markers[0] and len(self.markers) > 1:
                    hits = [h for h in (buf.find(m, pos) for m in self.markers[1:]) if h >= 0]
                    return min(hits) if hits else -1
                return -1
            if any(buf.startswith(m, i) for m in self.markers):
                return i
            pos = i + 1

    def feed(self, data: bytes) -> list[bytes]:
        if not self._pending:
            # Common case, a block without any marker: one scan, no copy of the block.
            ov = self._overlap
            if self._find(data, 0) < 0 and (not self._buf or self._find(self._buf[-ov:] + data[:ov], 0) < 0):
                self._buf = data[-self.keep:] if len(data) >= self.keep else (self._buf + data)[-self.keep:]
                return []
            self._scan = max(0, len(self._buf) - ov)
        buf = self._buf + data if self._buf else data
        out: list[bytes] = []
        pos = self._scan
        self._pending = False
        while True:
            hit = self._find(buf, pos)
            if hit < 0:
                break
            lf, crlf = buf.rfind(b"\n\n", 0, hit), buf.rfind(b"\r\n\r\n", 0, hit)
            start = max(lf + 2 if lf >= 0 else 0, crlf + 4 if crlf >= 0 else 0)
            end = _event_end(buf, hit)
            if end < 0:
                # The event is not complete yet: keep it whole and look again with more data.
                self._buf = buf[start:]
                self._scan = hit - start
                self._pending = True
                return out
            out.append(buf[start:end])
            pos = end
        tail = max(pos, len(buf) - self.keep)
        self._buf = buf[tail:]
        self._scan = max(0, len(self._buf) - self._overlap)
        return out


def _event_end(buf: bytes, pos: int) -> int:
    i = buf.find(b"\n\n", pos)
    j = buf.find(b"\r\n\r\n", pos, i + 2 if i >= 0 else len(buf))
    if j >= 0 and (i < 0 or j < i):
        return j + 4
    return i + 2 if i >= 0 else -1


class Dechunker:
    """Decodes HTTP/1.1 chunked framing incrementally, so the proxy can forward the upstream's
    bytes verbatim (framing included, in large reads) and still parse the payload."""

    def __init__(self) -> None:
        self._left = 0          # payload bytes left in the current chunk
        self._crlf = 0          # bytes of the CRLF after a chunk still to skip
        self._line = b""        # partial size or trailer line
        self._trailers = False
        self.done = False
        self.broken = False

    def feed(self, data: bytes) -> bytes:
        out = []
        i, n = 0, len(data)
        while i < n and not self.done and not self.broken:
            if self._left:
                take = min(self._left, n - i)
                out.append(data[i:i + take])
                self._left -= take
                i += take
                if not self._left:
                    self._crlf = 2
                continue
            if self._crlf:
                take = min(self._crlf, n - i)
                i += take
                self._crlf -= take
                continue
            nl = data.find(b"\n", i)
            if nl < 0:
                self._line += data[i:]
                if len(self._line) > 4096:
                    self.broken = True
                break
            line = (self._line + data[i:nl]).rstrip(b"\r")
            self._line = b""
            i = nl + 1
            if self._trailers:
                if not line:
                    self.done = True
                continue
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                self.broken = True
                break
            if size == 0:
                self._trailers = True
            else:
                self._left = size
        return b"".join(out)


def sse_data(event: bytes) -> bytes:
    """The `data:` payload of one raw SSE event (several data lines joined by newlines)."""
    parts = []
    for line in event.splitlines():
        if line.startswith(b"data:"):
            v = line[5:]
            parts.append(v[1:] if v.startswith(b" ") else v)
    return b"\n".join(parts)


class SideDecoder:
    """Decompresses a copy of the response for parsing only; the client gets the original bytes."""

    def __init__(self, content_encoding: str | None) -> None:
        enc = (content_encoding or "").strip().lower()
        self.supported = enc in ("", "identity", "gzip", "x-gzip", "deflate")
        self._z: Any = None
        if enc in ("gzip", "x-gzip"):
            self._z = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif enc == "deflate":
            self._z = zlib.decompressobj()
        self._deflate_raw_tried = enc != "deflate"
        self.identity = enc in ("", "identity")

    def decode(self, data: bytes) -> bytes:
        if self._z is None or not self.supported:
            return data if self.supported else b""
        try:
            return self._z.decompress(data)
        except zlib.error:
            if not self._deflate_raw_tried:
                # Some servers send raw deflate without the zlib header.
                self._deflate_raw_tried = True
                self._z = zlib.decompressobj(-zlib.MAX_WBITS)
                return self.decode(data)
            self.supported = False
            return b""


# Encodings the side decoder reads; others are removed from a metered request's Accept-Encoding
# so the usage stays readable (the client then simply gets an encoding it also accepted).
READABLE_ENCODINGS = ("gzip", "x-gzip", "deflate", "identity")


def readable_accept_encoding(value: str) -> str:
    kept = []
    for part in value.split(","):
        name = part.split(";", 1)[0].strip().lower()
        if name in READABLE_ENCODINGS:
            kept.append(part.strip())
    return ", ".join(kept) or "identity"


# Where each wire format keeps a request's output allowance, the preferred spelling first.
_ALLOWANCE_FIELDS = {
    "messages": ("max_tokens",),
    "chat": ("max_completion_tokens", "max_tokens"),
    "responses": ("max_output_tokens",),
    "completions": ("max_tokens",),
}


def with_output_allowance(obj: Any, kind: str, max_output: int, thinking_budget: int | None = None) -> bytes:
    """The request body with its output allowance lowered to `max_output` (and a manual thinking
    budget below it); everything else, the thinking type included, as the client sent it."""
    req = dict(obj)
    fields = _ALLOWANCE_FIELDS.get(kind, ("max_tokens",))
    present = [f for f in fields if f in req]
    for f in present or fields[:1]:
        req[f] = max_output
    thinking = req.get("thinking")
    if thinking_budget is not None and isinstance(thinking, dict) and "budget_tokens" in thinking:
        req["thinking"] = {**thinking, "budget_tokens": thinking_budget}
    return json.dumps(req, separators=(",", ":")).encode()
