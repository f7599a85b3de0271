"""A fake OpenAI Responses API on 127.0.0.1 for the real Codex CLI, which scripts the model and
records the truth (the bill).

Codex is pointed at it with `openai_base_url = fake.url` in its config.toml (or `-c`). Like a
server without WebSockets, it answers Codex's `GET /v1/responses` WebSocket attempt with 404
(`ws_status`); `POST /v1/responses` streams `response.created`, one `response.output_item.done`
(a message, or an `exec_command` call that makes Codex run a shell command and ask again) and
`response.completed` with the usage the test chose. Every completed response is logged to the
bill (`fake.served`, and one JSON line each in `bill_path` when given).

    with FakeResponses([run("sleep 5"), say("done")]) as fake:
        ... codex exec ... -c openai_base_url=<fake.url> ...
        fake.bill()        # tokens of every response delivered, in guard's convention
"""
from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tests.fakes.base import FakeServer, JsonHandler


@dataclass(frozen=True)
class Usage:
    """OpenAI's convention: `input_tokens` INCLUDES cached and cache-written tokens, and
    `output_tokens` includes reasoning."""

    input_tokens: int
    output_tokens: int
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0

    def as_responses(self) -> dict[str, Any]:
        return {
            "input_tokens": self.input_tokens,
            "input_tokens_details": {"cached_tokens": self.cached_tokens,
                                     "cache_write_tokens": self.cache_write_tokens},
            "output_tokens": self.output_tokens,
            "output_tokens_details": {"reasoning_tokens": self.reasoning_tokens},
            "total_tokens": self.input_tokens + self.output_tokens,
        }


@dataclass(frozen=True)
class Turn:
    """One response: a final message, or (with `command`) a shell command for Codex to run."""

    text: str = "Done."
    command: str | None = None
    usage: Usage | None = None      # None: the server's usage function decides
    delay: float = 0.0              # seconds before the response starts
    status: int = 200               # != 200: an API error instead of a response


def say(text: str, **kw: Any) -> Turn:
    return Turn(text=text, **kw)


def run(command: str, **kw: Any) -> Turn:
    return Turn(text="", command=command, **kw)


@dataclass
class Request:
    n: int                          # 1-based over every POST /v1/responses
    headers: dict[str, str]
    body: dict[str, Any]

    @property
    def model(self) -> str:
        return str(self.body.get("model") or "")

    @property
    def tool_outputs(self) -> list[str]:
        """The outputs of the commands Codex ran, as it reports them back."""
        return [str(i.get("output")) for i in self.body.get("input") or []
                if isinstance(i, dict) and i.get("type") == "function_call_output"]


@dataclass
class Served:
    n: int
    request_id: str
    response_id: str
    model: str
    usage: Usage
    command: str | None
    started_at: float
    finished_at: float | None = None   # time.time() when the last byte was written
    completed: bool = False            # False: the client went away before the end


Script = Callable[[Request], Turn]
UsageFn = Callable[[Request], Usage]


def default_usage(req: Request) -> Usage:
    """Deterministic and distinct per request, with every kind of token."""
    return Usage(input_tokens=20_000 + 7 * req.n, output_tokens=300 + req.n, cached_tokens=4_000,
                 cache_write_tokens=1_000, reasoning_tokens=100)


def sequence(turns: Iterable[Turn | str], then: Script | None = None) -> Script:
    """Requests get `turns` in order (strings are messages), then `then` (default: "Done.")."""
    it = iter([say(t) if isinstance(t, str) else t for t in turns])
    lock = threading.Lock()
    fallback = then or (lambda req: say("Done."))

    def script(req: Request) -> Turn:
        with lock:
            nxt = next(it, None)
        return nxt if nxt is not None else fallback(req)
    return script


def forever(turn: Turn) -> Script:
    """A runaway: every request gets the same turn (a command: Codex never stops asking)."""
    return lambda req: turn


class FakeResponses(FakeServer):
    name = "fake-responses"
    requests: list[Request]
    served: list[Served]

    def __init__(self, script: Script | Sequence[Turn | str] | None = None, *,
                 usage: UsageFn = default_usage, ws_status: int = 404, bill_path: Path | None = None,
                 on_served: Callable[[Served], None] | None = None) -> None:
        super().__init__(on_served)
        self.script: Script = sequence(script or []) if not callable(script) else script
        self.usage_fn = usage
        self.ws_status = ws_status
        self.bill_path = bill_path
        self.gets: list[str] = []          # every GET path (WebSocket attempts included)

    def handler_base(self) -> type[JsonHandler]:
        return _Handler

    @property
    def url(self) -> str:
        """What Codex calls the base URL (`openai_base_url`, a provider's `base_url`)."""
        return f"http://127.0.0.1:{self.port}/v1"

    # -- the truth --------------------------------------------------------------------------

    def completed(self) -> list[Served]:
        with self._lock:
            return [s for s in self.served if s.completed]

    def bill(self) -> dict[str, int]:
        """Tokens of every response fully delivered, in guard's convention (input EXCLUDES cache
        reads and writes)."""
        tot = {"input_tokens": 0, "cache_read_tokens": 0, "cache_write_tokens": 0,
               "output_tokens": 0, "calls": 0}
        for s in self.completed():
            u = s.usage
            tot["input_tokens"] += u.input_tokens - u.cached_tokens - u.cache_write_tokens
            tot["cache_read_tokens"] += u.cached_tokens
            tot["cache_write_tokens"] += u.cache_write_tokens
            tot["output_tokens"] += u.output_tokens
            tot["calls"] += 1
        return tot

    def wait_served(self, count: int, timeout: float = 60.0) -> bool:
        return self.wait_until(lambda: sum(1 for s in self.served if s.completed) >= count, timeout)

    # -- used by the handler ----------------------------------------------------------------

    def _begin(self, headers: dict[str, str], body: dict[str, Any]) -> tuple[Turn, Served]:
        with self._cond:
            n = next(self._counter)
            req = Request(n, headers, body)
            self.requests.append(req)
            self._cond.notify_all()
        turn = self.script(req)
        served = Served(n=n, request_id=f"req_{self.token}{n:04d}", response_id=f"resp_{self.token}{n:04d}",
                        model=req.model, usage=turn.usage or self.usage_fn(req), command=turn.command,
                        started_at=time.time())
        if turn.status == 200:
            with self._lock:
                self.served.append(served)
        return turn, served

    def _log_bill(self, served: Served) -> None:
        if self.bill_path is not None:
            line = {"response_id": served.response_id, "model": served.model, **asdict(served.usage)}
            with self._lock, open(self.bill_path, "a") as f:
                f.write(json.dumps(line) + "\n")


class _Handler(JsonHandler):
    server_fake: FakeResponses

    def error_body(self, kind: str, message: str) -> dict[str, Any]:
        return _error(kind, message)

    def do_GET(self) -> None:  # noqa: N802
        fake = self.server_fake
        with fake._cond:
            fake.gets.append(self.path)
            fake._cond.notify_all()
        status = fake.ws_status if self.path.split("?", 1)[0].endswith("/responses") else 404
        self._json(status, _error("not_found", f"no route GET {self.path}"))

    def do_POST(self) -> None:  # noqa: N802
        body = self.read_json()
        if body is None:
            return
        if not self.path.split("?", 1)[0].endswith("/responses"):
            self._json(404, _error("not_found", f"no route POST {self.path}"))
            return
        fake = self.server_fake
        turn, served = fake._begin({k.lower(): v for k, v in self.headers.items()}, body)
        ok = False
        try:
            if turn.delay:
                time.sleep(turn.delay)
            if turn.status != 200:
                self._json(turn.status, _error("server_error", "scripted error"), served.request_id)
                return
            self._sse(_events(turn, served), served)
            ok = True
        except (BrokenPipeError, ConnectionResetError):
            ok = False
        finally:
            if turn.status == 200:
                if ok:
                    fake._log_bill(served)
                fake._finish(served, ok)

    def _sse(self, events: list[dict[str, Any]], served: Served) -> None:
        self.start_sse(served.request_id)
        for obj in events:
            self._chunk(f"event: {obj['type']}\ndata: {json.dumps(obj)}\n\n".encode())
        self.end_chunks()


def _error(kind: str, message: str) -> dict[str, Any]:
    return {"error": {"type": kind, "code": kind, "message": message, "param": None}}


def _item(turn: Turn, served: Served) -> dict[str, Any]:
    if turn.command is not None:
        return {"type": "function_call", "id": f"fc_{served.response_id}", "call_id": f"call_{served.response_id}",
                "name": "exec_command", "arguments": json.dumps({"cmd": turn.command}), "status": "completed"}
    return {"type": "message", "id": f"msg_{served.response_id}", "role": "assistant", "status": "completed",
            "content": [{"type": "output_text", "text": turn.text, "annotations": []}]}


def _events(turn: Turn, served: Served) -> list[dict[str, Any]]:
    seq = itertools.count()
    item = _item(turn, served)

    def response(status: str) -> dict[str, Any]:
        return {"id": served.response_id, "object": "response", "created_at": int(served.started_at),
                "status": status, "model": served.model, "output": [item] if status == "completed" else [],
                "usage": served.usage.as_responses() if status == "completed" else None}

    events: list[dict[str, Any]] = [
        {"type": "response.created", "response": response("in_progress")},
        {"type": "response.output_item.done", "output_index": 0, "item": item},
        {"type": "response.completed", "response": response("completed")},
    ]
    return [e | {"sequence_number": next(seq)} for e in events]
