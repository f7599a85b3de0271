"""Which HTTP stack should the proxy stand on? The same fake upstream relayed by minimal
streaming relays (no metering: the stack's own cost) on each candidate, measured by the same
client, interleaved in one run, idle and with both cores busy:

- stdlib: http.server (ThreadingHTTPServer) + http.client, one upstream connection per thread
  (the shape of today's guard/proxy/server.py);
- h11+httpcore: an h11 server on threads, httpcore's pooled client;
- aiohttp: aiohttp.web + one ClientSession;
- uvloop raw: asyncio on uvloop, bytes relayed with only enough parsing to frame a response.

    python bench/http_stacks.py [--rounds 3] [--requests 300] [--seconds 2] [--mb 10]
    (needs: python3 -m pip install aiohttp uvloop httpcore h11)
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
from contextlib import nullcontext
from pathlib import Path
from urllib.parse import urlsplit

from _common import pct
from _load import CONDITIONS, busy_cores
from _upstream import Upstream

HERE = Path(__file__).resolve().parent
STACKS = ("stdlib", "h11+httpcore", "aiohttp", "uvloop raw")
HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


def _announce(port: int) -> None:
    print(f"http://127.0.0.1:{port}", flush=True)


# -- the relays ------------------------------------------------------------------------------------

def relay_stdlib(up: str) -> None:
    import http.client
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    u = urlsplit(up)
    local = threading.local()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def log_message(self, *a: object) -> None:
            pass

        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            conn = getattr(local, "conn", None) or http.client.HTTPConnection(u.hostname, u.port)
            local.conn = conn
            conn.request("POST", self.path, body=body,
                         headers={k: v for k, v in self.headers.items() if k.lower() not in HOP})
            resp = conn.getresponse()
            self.send_response(resp.status)
            for k, v in resp.getheaders():
                if k.lower() not in HOP:
                    self.send_header(k, v)
            self.send_header("transfer-encoding", "chunked")
            self.end_headers()
            while data := resp.read1(1 << 16):
                self.wfile.write(b"%x\r\n%b\r\n" % (len(data), data))
            self.wfile.write(b"0\r\n\r\n")

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    _announce(httpd.server_address[1])
    httpd.serve_forever()


def relay_h11(up: str) -> None:
    import h11
    import httpcore

    u = urlsplit(up)
    pool = httpcore.ConnectionPool(max_connections=64)
    srv = socket.create_server(("127.0.0.1", 0), backlog=256)
    _announce(srv.getsockname()[1])

    def serve(sock: socket.socket) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = h11.Connection(h11.SERVER)
        while True:
            ev = conn.next_event()
            if ev is h11.NEED_DATA:
                data = sock.recv(1 << 16)
                if not data:
                    return
                conn.receive_data(data)
                continue
            if isinstance(ev, h11.Request):
                req, body = ev, bytearray()
                while True:
                    ev = conn.next_event()
                    if ev is h11.NEED_DATA:
                        conn.receive_data(sock.recv(1 << 16))
                    elif isinstance(ev, h11.Data):
                        body += ev.data
                    elif isinstance(ev, h11.EndOfMessage):
                        break
                headers = [(k, v) for k, v in req.headers if k.decode().lower() not in HOP]
                with pool.stream("POST", f"{up}{req.target.decode()}", headers=headers,
                                 content=bytes(body)) as resp:
                    out = [(k, v) for k, v in resp.headers if k.decode().lower() not in HOP]
                    sock.sendall(conn.send(h11.Response(status_code=resp.status,
                                                        headers=out + [(b"transfer-encoding", b"chunked")])))
                    for chunk in resp.iter_stream():
                        sock.sendall(conn.send(h11.Data(data=chunk)))
                sock.sendall(conn.send(h11.EndOfMessage()))
                conn.start_next_cycle()
            elif isinstance(ev, h11.ConnectionClosed):
                return

    del u
    while True:
        s, _ = srv.accept()
        threading.Thread(target=serve, args=(s,), daemon=True).start()


def relay_aiohttp(up: str) -> None:
    import asyncio

    from aiohttp import ClientSession, TCPConnector, web

    async def main() -> None:
        session = ClientSession(connector=TCPConnector(limit=0), auto_decompress=False)

        async def handle(request: web.Request) -> web.StreamResponse:
            body = await request.read()
            async with session.post(f"{up}{request.path_qs}", data=body,
                                    headers={k: v for k, v in request.headers.items()
                                             if k.lower() not in HOP}) as resp:
                out = web.StreamResponse(status=resp.status, headers={
                    k: v for k, v in resp.headers.items() if k.lower() not in HOP})
                out.enable_chunked_encoding()
                await out.prepare(request)
                async for chunk in resp.content.iter_any():
                    await out.write(chunk)
                await out.write_eof()
                return out

        app = web.Application()
        app.router.add_route("POST", "/{tail:.*}", handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        _announce(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]
        await asyncio.Event().wait()

    asyncio.run(main())


def relay_uvloop(up: str) -> None:
    import asyncio

    import uvloop

    u = urlsplit(up)

    async def read_head(r: asyncio.StreamReader) -> tuple[bytes, int, bool]:
        head = await r.readuntil(b"\r\n\r\n")
        low = head.lower()
        chunked = b"transfer-encoding: chunked" in low
        length = int(low.split(b"content-length:")[1].split(b"\r\n")[0]) if b"content-length:" in low else 0
        return head, length, chunked

    async def handle(cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        ur, uw = await asyncio.open_connection(u.hostname, u.port, limit=1 << 20)
        try:
            while True:
                head, length, _ = await read_head(cr)
                uw.write(head + (await cr.readexactly(length) if length else b""))
                rhead, rlength, rchunked = await read_head(ur)
                cw.write(rhead)
                if rchunked:  # relay chunk frames as they come, ending on the last one
                    while True:
                        line = await ur.readline()
                        size = int(line.split(b";")[0], 16)
                        cw.write(line + await ur.readexactly(size + 2))
                        await cw.drain()
                        if size == 0:
                            break
                else:
                    cw.write(await ur.readexactly(rlength))
                    await cw.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            cw.close()
            uw.close()

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=256)
        _announce(server.sockets[0].getsockname()[1])
        await asyncio.Event().wait()

    uvloop.run(main())


RELAYS = {"stdlib": relay_stdlib, "h11+httpcore": relay_h11, "aiohttp": relay_aiohttp,
          "uvloop raw": relay_uvloop}


class Relay:
    def __init__(self, stack: str, upstream: str) -> None:
        self.proc = subprocess.Popen([sys.executable, __file__, "--relay", stack, "--upstream", upstream],
                                     stdout=subprocess.PIPE, text=True, cwd=HERE)
        assert self.proc.stdout is not None
        self.url = self.proc.stdout.readline().strip()
        if not self.url:
            raise SystemExit(f"relay {stack} did not start (is its package installed?)")

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


# -- the measurement -------------------------------------------------------------------------------

def client(base: str, args: list[str]) -> dict | None:
    try:
        out = subprocess.run([sys.executable, str(HERE / "_client.py"), *args], capture_output=True,
                             text=True, timeout=300, env={**os.environ, "ANTHROPIC_BASE_URL": base})
    except subprocess.TimeoutExpired:
        return None
    if out.returncode != 0:
        sys.stderr.write(out.stderr[-400:])
        return None
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--requests", type=int, default=300)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--mb", type=float, default=10)
    ap.add_argument("--relay", choices=STACKS)
    ap.add_argument("--upstream")
    a = ap.parse_args()
    if a.relay:
        RELAYS[a.relay](a.upstream)
        return
    print(f"minimal relays in front of one upstream; {CONDITIONS}; {a.rounds} interleaved rounds; "
          f"{os.cpu_count()} cores")
    with Upstream(4096) as small, Upstream(int(a.mb * 1e6)) as big:
        paths = ("direct", *STACKS)
        relays = {s: (Relay(s, small.url), Relay(s, big.url)) for s in STACKS}
        try:
            for label, load in (("idle", nullcontext()), (f"both cores busy ({os.cpu_count()} busy loops)", busy_cores())):
                got = {p: {"rps": [], "mb_s": [], "ttfb": []} for p in paths}
                with load:
                    for _ in range(a.rounds):
                        for p in paths:
                            s_url, b_url = (small.url, big.url) if p == "direct" else (relays[p][0].url, relays[p][1].url)
                            if r := client(s_url, ["rps", "8", str(a.seconds)]):
                                got[p]["rps"].append(r["rps"])
                            if r := client(b_url, ["stream"]):
                                got[p]["mb_s"].append(r["mb_s"])
                            if r := client(s_url, ["latency", str(a.requests)]):
                                got[p]["ttfb"].extend(r["ttfb_ms"])
                print(f"  {label}:")
                print(f"    {'':14s}{'req/s (8 conn)':>16s}{'10 MB stream':>16s}{'TTFB p50':>12s}{'TTFB p99':>12s}")
                base = got["direct"]
                for p in paths:
                    g = got[p]
                    if not (g["rps"] and g["mb_s"] and g["ttfb"]):
                        print(f"    {p:14s} failed (see stderr)")
                        continue
                    rps, mbs = statistics.median(g["rps"]), statistics.median(g["mb_s"])
                    rr = f"{rps / statistics.median(base['rps']):.0%}" if base["rps"] else ""
                    mr = f"{mbs / statistics.median(base['mb_s']):.0%}" if base["mb_s"] else ""
                    print(f"    {p:14s}{rps:9.0f} {rr:>5s}{mbs:9.1f} {mr:>5s} {pct(g['ttfb'], 50):9.2f} ms"
                          f"{pct(g['ttfb'], 99):9.2f} ms")
        finally:
            for pair in relays.values():
                for r in pair:
                    r.close()


if __name__ == "__main__":
    main()
