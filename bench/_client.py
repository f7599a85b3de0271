"""The agent side of the proxy benches: a client in a process of its own that talks to
ANTHROPIC_BASE_URL (the upstream directly, or whatever relay was put in front of it) and prints
its figures as JSON. With --parent-cpu it also reports the CPU its parent process (guard, when
run as `guard --meter proxy run -- python _client.py ...`) spent during the measurement.

    python bench/_client.py latency N | rps CONNECTIONS SECONDS | stream
"""
from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from urllib.parse import urlsplit

import psutil
from _upstream import BODY


def _target() -> tuple[str, int, str]:
    u = urlsplit(os.environ["ANTHROPIC_BASE_URL"])
    return u.hostname or "127.0.0.1", u.port or 80, u.path.rstrip("/") + "/v1/messages"


def _request(host: str, path: str) -> bytes:
    return (f"POST {path} HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\n"
            f"x-api-key: bench\r\nanthropic-version: 2023-06-01\r\ncontent-length: {len(BODY)}\r\n\r\n"
            ).encode() + BODY


async def _response(reader: asyncio.StreamReader, on_first: list[float] | None = None) -> int:
    """Read one whole response; returns the body's size."""
    head = await reader.readuntil(b"\r\n\r\n")
    if on_first is not None:
        on_first.append(time.perf_counter())
    lower = head.lower()
    if not head.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(head.split(b"\r\n")[0].decode())
    if b"transfer-encoding: chunked" in lower:
        n = 0
        while True:
            size = int((await reader.readline()).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            n += size
            if size == 0:
                return n
    length = int(lower.split(b"content-length:")[1].split(b"\r\n")[0])
    await reader.readexactly(length)
    return length


async def latency(n: int) -> dict[str, object]:
    host, port, path = _target()
    reader, writer = await asyncio.open_connection(host, port)
    req = _request(host, path)
    ttfb = []
    for _ in range(n):
        t0 = time.perf_counter()
        first: list[float] = []
        writer.write(req)
        await _response(reader, first)
        ttfb.append((first[0] - t0) * 1000)
    writer.close()
    return {"ttfb_ms": ttfb[min(20, n // 5):], "requests": n}  # the first ones warm caches


async def rps(connections: int, seconds: float) -> dict[str, object]:
    host, port, path = _target()
    req = _request(host, path)
    count = 0
    stop = time.perf_counter() + seconds

    async def one() -> None:
        nonlocal count
        reader, writer = await asyncio.open_connection(host, port)
        while time.perf_counter() < stop:
            writer.write(req)
            await _response(reader)
            count += 1
        writer.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(connections)))
    return {"rps": count / (time.perf_counter() - t0), "requests": count}


async def stream() -> dict[str, object]:
    host, port, path = _target()
    reader, writer = await asyncio.open_connection(host, port, limit=1 << 20)
    t0 = time.perf_counter()
    writer.write(_request(host, path))
    n = await _response(reader)
    writer.close()
    return {"mb_s": n / (time.perf_counter() - t0) / 1e6, "requests": 1}


def main() -> None:
    args = sys.argv[1:]
    parent_cpu = "--parent-cpu" in args
    args = [a for a in args if a != "--parent-cpu"]
    parent = psutil.Process(os.getppid()) if parent_cpu else None
    c0 = parent.cpu_times() if parent else None
    mode = args[0]
    if mode == "latency":
        out = asyncio.run(latency(int(args[1])))
    elif mode == "rps":
        out = asyncio.run(rps(int(args[1]), float(args[2])))
    else:
        out = asyncio.run(stream())
    if parent is not None and c0 is not None:
        c1 = parent.cpu_times()
        out["parent_cpu_s"] = (c1.user + c1.system) - (c0.user + c0.system)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
