"""A fake Anthropic upstream that answers at once, for the proxy benches: asyncio on raw
sockets, HTTP/1.1 keep-alive, every POST answered with one precomputed chunked SSE stream
(message_start with usage, text deltas, message_delta with usage), so the upstream costs next
to nothing and a relay in front of it is what gets measured.

    python bench/_upstream.py SIZE_BYTES     # prints its base URL, serves until stdin closes
"""
from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

MODEL = "claude-sonnet-4-5"
# ~3 KB of JSON, the shape of a short Messages API request
BODY = json.dumps({"model": MODEL, "max_tokens": 1024, "stream": True,
                   "system": "You are a careful coding assistant. " * 10,
                   "messages": [{"role": "user", "content": "Refactor this function: " + "x = x + 1; " * 230}]
                   }).encode()


def _event(name: str, data: dict[str, object]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def sse_stream(size: int) -> bytes:
    """A whole chunked response body of about `size` bytes of SSE."""
    head = [
        _event("message_start", {"type": "message_start", "message": {
            "id": "msg_bench", "type": "message", "role": "assistant", "model": MODEL, "content": [],
            "stop_reason": None, "usage": {"input_tokens": 800, "output_tokens": 1}}}),
        _event("content_block_start", {"type": "content_block_start", "index": 0,
                                       "content_block": {"type": "text", "text": ""}}),
    ]
    delta = _event("content_block_delta", {"type": "content_block_delta", "index": 0,
                                           "delta": {"type": "text_delta", "text": "y" * 2000}})
    tail = [
        _event("content_block_stop", {"type": "content_block_stop", "index": 0}),
        _event("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn"},
                                 "usage": {"output_tokens": 50}}),
        _event("message_stop", {"type": "message_stop"}),
    ]
    events = head + [delta] * max(1, size // len(delta)) + tail
    # one HTTP chunk per ~16 KB, as a real server flushes
    out, buf = [], b""
    for ev in events:
        buf += ev
        if len(buf) >= 16384:
            out.append(b"%x\r\n%b\r\n" % (len(buf), buf))
            buf = b""
    if buf:
        out.append(b"%x\r\n%b\r\n" % (len(buf), buf))
    out.append(b"0\r\n\r\n")
    return b"".join(out)


async def serve(size: int) -> None:
    body = sse_stream(size)
    head = (b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n"
            b"request-id: req_bench\r\n\r\n")
    other = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 11\r\n\r\n{\"ok\":true}"

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                raw = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in raw.split(b"\r\n")[1:]:
                    k, _, v = line.partition(b":")
                    if k.strip().lower() == b"content-length":
                        length = int(v)
                if length:
                    await reader.readexactly(length)
                writer.write(head + body if raw.startswith(b"POST") else other)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=256)
    port = server.sockets[0].getsockname()[1]
    print(f"http://127.0.0.1:{port}", flush=True)
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    loop.add_reader(sys.stdin.fileno(), lambda: done.done() or done.set_result(None))
    await done


class Upstream:
    """The fake upstream in a process of its own, like a remote API."""

    def __init__(self, size: int) -> None:
        self.proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), str(size)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        self.url = self.proc.stdout.readline().strip()

    def __enter__(self) -> Upstream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.proc.kill()
        self.proc.wait()


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    asyncio.run(serve(int(sys.argv[1])))
