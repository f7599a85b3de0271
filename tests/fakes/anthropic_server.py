"""A fake Anthropic Messages API on 127.0.0.1 that scripts the model and records the truth.

Real agents (Claude Code, aider with an Anthropic model, guard's metering proxy) are pointed at it
with ANTHROPIC_BASE_URL. Every answer carries a `request-id` header and a usage object the test
chose; the server records exactly what it returned, so a test can compare guard's ledger with it.

    with FakeAnthropic(script=bash_loop("echo hi")) as fake:
        env["ANTHROPIC_BASE_URL"] = fake.url
        ... run the agent ...
        fake.usage_totals()      # what was really "billed"
        fake.served              # one Served per answered request, in order

A script is any callable `(Request) -> Reply`. Helpers below build the common ones: a text answer,
a runaway Bash loop, a fixed sequence, sub-agent spawns.

The server honours `max_tokens` as the real API does: a reply whose usage has more output tokens
than the request allows is cut there (its blocks shortened in proportion, mid-`tool_use` too, the
cut tool call's JSON left unfinished), with `stop_reason: max_tokens` and the cut output billed.
"""
from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from tests.fakes.base import FakeServer, JsonHandler

# --------------------------------------------------------------------------------------------
# What a script returns


@dataclass(frozen=True)
class Usage:
    input_tokens: int
    output_tokens: int
    cache_write_5m: int = 0
    cache_write_1h: int = 0
    cache_read: int = 0

    @property
    def cache_write(self) -> int:
        return self.cache_write_5m + self.cache_write_1h

    @property
    def total(self) -> int:
        return self.input_tokens + self.output_tokens + self.cache_write + self.cache_read

    def as_api(self, output_tokens: int | None = None) -> dict[str, Any]:
        return {
            "input_tokens": self.input_tokens,
            "cache_creation_input_tokens": self.cache_write,
            "cache_read_input_tokens": self.cache_read,
            "cache_creation": {
                "ephemeral_5m_input_tokens": self.cache_write_5m,
                "ephemeral_1h_input_tokens": self.cache_write_1h,
            },
            "output_tokens": self.output_tokens if output_tokens is None else output_tokens,
            "service_tier": "standard",
        }


@dataclass(frozen=True)
class Text:
    text: str


@dataclass(frozen=True)
class Thinking:
    text: str


@dataclass(frozen=True)
class ToolUse:
    name: str
    input: dict[str, Any]
    id: str | None = None   # default: toolu_<server token><n>_<i>
    cut_json: str | None = None   # set by a max_tokens cut: the part of the input JSON sent


Block = Text | Thinking | ToolUse


def _block_size(b: Block) -> int:
    return len(json.dumps(b.input)) if isinstance(b, ToolUse) else len(b.text)


def cut_at_max_tokens(rep: Reply, usage: Usage, max_tokens: int | None) -> tuple[Reply, Usage]:
    """The reply as the API sends it under `max_tokens`: unchanged when it fits, else its output
    cut to max_tokens/output_tokens of its characters, block by block."""
    if max_tokens is None or usage.output_tokens <= max_tokens:
        return rep, usage
    budget = sum(_block_size(b) for b in rep.blocks) * max_tokens // max(1, usage.output_tokens)
    kept: list[Block] = []
    for b in rep.blocks:
        size = _block_size(b)
        if size <= budget:
            kept.append(b)
            budget -= size
            continue
        if isinstance(b, ToolUse):
            kept.append(dataclasses.replace(b, cut_json=json.dumps(b.input)[:budget]))
        elif budget:
            kept.append(dataclasses.replace(b, text=b.text[:budget]))
        break
    return (dataclasses.replace(rep, blocks=tuple(kept), stop_reason="max_tokens"),
            dataclasses.replace(usage, output_tokens=max_tokens))


@dataclass(frozen=True)
class Reply:
    blocks: tuple[Block, ...] = (Text("ok"),)
    usage: Usage | None = None        # None: the server's usage function decides
    chunk_delay: float = 0.0          # seconds between SSE events (a slow stream)
    status: int = 200                 # != 200: an API error with error_type
    error_type: str = "api_error"
    stop_reason: str | None = None    # default: tool_use when a ToolUse is present, else end_turn
    omit_usage: bool = False          # a gateway that drops usage: no usage object anywhere
    cut_after: int | None = None      # a stream the upstream drops after this many SSE events


def reply(*blocks: Block, **kw: Any) -> Reply:
    return Reply(blocks=tuple(blocks) or (Text("ok"),), **kw)


# --------------------------------------------------------------------------------------------
# What a script sees


@dataclass
class Request:
    n: int                     # 1-based over every POST /v1/messages this server answered
    path: str
    headers: dict[str, str]
    body: dict[str, Any]

    @property
    def stream(self) -> bool:
        return bool(self.body.get("stream"))

    @property
    def model(self) -> str:
        return str(self.body.get("model") or "claude-sonnet-4-5")

    @property
    def tool_names(self) -> list[str]:
        return [str(t.get("name")) for t in self.body.get("tools") or [] if isinstance(t, dict)]

    @property
    def system_text(self) -> str:
        sys_ = self.body.get("system")
        if isinstance(sys_, str):
            return sys_
        if isinstance(sys_, list):
            return "\n".join(str(b.get("text", "")) for b in sys_ if isinstance(b, dict))
        return ""

    def _texts(self, msg: dict[str, Any]) -> list[str]:
        c = msg.get("content")
        if isinstance(c, str):
            return [c]
        out = []
        for b in c or []:
            if isinstance(b, dict) and b.get("type") == "text":
                out.append(str(b.get("text", "")))
        return out

    @property
    def messages(self) -> list[dict[str, Any]]:
        return [m for m in self.body.get("messages") or [] if isinstance(m, dict)]

    @property
    def user_text(self) -> str:
        """All text the user side wrote in this conversation (markers are searched in it)."""
        return "\n".join(t for m in self.messages if m.get("role") == "user" for t in self._texts(m))

    @property
    def last_user_text(self) -> str:
        for m in reversed(self.messages):
            if m.get("role") == "user":
                return "\n".join(self._texts(m))
        return ""

    @property
    def tool_results(self) -> list[dict[str, Any]]:
        """tool_result blocks of the last user message (what the tools just returned)."""
        for m in reversed(self.messages):
            if m.get("role") == "user":
                c = m.get("content")
                return [b for b in c if isinstance(b, dict) and b.get("type") == "tool_result"] \
                    if isinstance(c, list) else []
        return []

    @property
    def assistant_turns(self) -> int:
        return sum(1 for m in self.messages if m.get("role") == "assistant")

    @property
    def is_agent_loop(self) -> bool:
        """A main-loop or sub-agent request (it offers tools), not a side call such as the title."""
        return bool(self.tool_names)


@dataclass
class Served:
    n: int
    request_id: str
    message_id: str
    model: str
    usage: Usage
    stream: bool
    agent_loop: bool
    started_at: float
    finished_at: float | None = None   # time.time() when the last byte was written
    completed: bool = False            # False: the client went away before the end
    tool_uses: tuple[str, ...] = ()    # complete tool calls (a call cut by max_tokens is not one)
    status: int = 200
    stop_reason: str = "end_turn"


Script = Callable[[Request], Reply]
UsageFn = Callable[[int], Usage]


def default_usage(n: int) -> Usage:
    return Usage(input_tokens=1000 + n, output_tokens=50 + n, cache_write_5m=200, cache_read=3000)


# --------------------------------------------------------------------------------------------
# Scripts


def text_answer(text: str = "Done.") -> Script:
    return lambda req: reply(Text(text))


def bash_loop(command: str = "echo hi", *, vary: bool = False) -> Script:
    """A runaway agent: every tool-offering request gets one more Bash call, forever.
    vary=True appends the request number so the stuck-loop detector does not fire."""
    def script(req: Request) -> Reply:
        if "Bash" not in req.tool_names:
            return reply(Text("Looping."))
        cmd = f"{command} {req.n}" if vary else command
        return reply(Text("Running it again."), ToolUse("Bash", {"command": cmd, "description": "loop"}))
    return script


def sequence(replies: Iterable[Reply], then: Script | None = None) -> Script:
    """Agent-loop requests get `replies` in order, then `then` (default: a text answer).
    Side calls (no tools offered: title, summaries) always get a short text."""
    it = iter(list(replies))
    lock = threading.Lock()
    fallback = then or text_answer()

    def script(req: Request) -> Reply:
        if not req.is_agent_loop:
            return reply(Text("Title"))
        with lock:
            nxt = next(it, None)
        return nxt if nxt is not None else fallback(req)
    return script


def agent_tool_name(req: Request) -> str:
    """Claude Code's sub-agent tool: `Agent` in recent versions, `Task` in older ones."""
    for name in ("Agent", "Task"):
        if name in req.tool_names:
            return name
    return "Task"


SUBAGENT_MARKER = "SUBAGENT-TASK"


def session_with_subagents(turns: int = 10, subagents: int = 2, sub_turns: int = 3) -> Script:
    """A scripted session: the main loop runs `turns` Bash calls, spawning a sub-agent at a few of
    them; each sub-agent runs `sub_turns` Bash calls then answers. Requests are told apart by the
    marker in the sub-agent's prompt and by how many assistant turns the conversation holds."""
    spawn_at = {1 + i * max(1, turns // max(1, subagents)) for i in range(subagents)}

    def script(req: Request) -> Reply:
        if not req.is_agent_loop:
            return reply(Text("Title"))
        turn = req.assistant_turns
        if _first_user_has(req, SUBAGENT_MARKER):
            if turn < sub_turns:
                return reply(ToolUse("Bash", {"command": f"echo sub {turn}", "description": "sub"}))
            return reply(Text("Sub-agent finished."))
        if turn >= turns:
            return reply(Text("All done."))
        if turn in spawn_at:
            return reply(Text("Delegating."), ToolUse(agent_tool_name(req), {
                "description": f"sub task {turn}",
                "prompt": f"{SUBAGENT_MARKER} {turn}: run a few commands",
                "subagent_type": "general-purpose",
            }))
        return reply(ToolUse("Bash", {"command": f"echo main {turn}", "description": "main"}))
    return script


def _first_user_has(req: Request, marker: str) -> bool:
    for m in req.messages:
        if m.get("role") == "user":
            return any(marker in t for t in req._texts(m))
    return False


# --------------------------------------------------------------------------------------------
# The server


class FakeAnthropic(FakeServer):
    name = "fake-anthropic"
    requests: list[Request]
    served: list[Served]

    def __init__(
        self,
        script: Script | None = None,
        *,
        usage: UsageFn = default_usage,
        on_served: Callable[[Served], None] | None = None,
    ) -> None:
        super().__init__(on_served)
        self.script: Script = script or text_answer()
        self.usage_fn = usage
        self.heads: list[str] = []

    # -- lifecycle --------------------------------------------------------------------------

    def handler_base(self) -> type[JsonHandler]:
        return _Handler

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- the truth --------------------------------------------------------------------------

    def completed(self, agent_loop_only: bool = False) -> list[Served]:
        with self._lock:
            return [s for s in self.served if s.completed and (s.agent_loop or not agent_loop_only)]

    def usage_totals(self, agent_loop_only: bool = False) -> dict[str, int]:
        """Tokens of every response fully delivered (a response cut off by a kill is not in it)."""
        tot = {"input_tokens": 0, "output_tokens": 0, "cache_write_tokens": 0,
               "cache_write_1h_tokens": 0, "cache_read_tokens": 0, "calls": 0, "tool_uses": 0}
        for s in self.completed(agent_loop_only):
            tot["input_tokens"] += s.usage.input_tokens
            tot["output_tokens"] += s.usage.output_tokens
            tot["cache_write_tokens"] += s.usage.cache_write
            tot["cache_write_1h_tokens"] += s.usage.cache_write_1h
            tot["cache_read_tokens"] += s.usage.cache_read
            tot["calls"] += 1
            tot["tool_uses"] += len(s.tool_uses)
        return tot

    def wait_served(self, count: int, timeout: float = 30.0) -> bool:
        """Wait until `count` responses have been fully delivered."""
        return self.wait_until(lambda: sum(1 for s in self.served if s.completed) >= count, timeout)

    # -- used by the handler ----------------------------------------------------------------

    def _begin(self, path: str, headers: dict[str, str], body: dict[str, Any]) -> tuple[Request, Reply, Served]:
        with self._lock:
            n = next(self._counter)
            req = Request(n, path, headers, body)
            self.requests.append(req)
        rep = self.script(req)
        max_tokens = body.get("max_tokens")
        rep, usage = cut_at_max_tokens(rep, rep.usage or self.usage_fn(n),
                                       max_tokens if isinstance(max_tokens, int) else None)
        rep = dataclasses.replace(rep, blocks=tuple(
            dataclasses.replace(b, id=b.id or f"toolu_{self.token}{n:04d}_{i}") if isinstance(b, ToolUse) else b
            for i, b in enumerate(rep.blocks)))
        tool_ids = [b.id or "" for b in rep.blocks if isinstance(b, ToolUse) and b.cut_json is None]
        served = Served(
            n=n,
            request_id=f"req_{self.token}{n:04d}",
            message_id=f"msg_{self.token}{n:04d}",
            model=req.model,
            usage=usage,
            stream=req.stream,
            agent_loop=req.is_agent_loop,
            started_at=time.time(),
            tool_uses=tuple(tool_ids),
            status=rep.status,
            stop_reason=_stop_reason(rep),
        )
        if rep.status == 200:
            with self._lock:
                self.served.append(served)
        return req, rep, served


class _Handler(JsonHandler):
    server_fake: FakeAnthropic
    request_id_header = "request-id"

    def error_body(self, kind: str, message: str) -> dict[str, Any]:
        return _error(kind, message)

    # HEAD / and HEAD /api/hello: Claude Code's connectivity probes at startup
    def do_HEAD(self) -> None:
        self.server_fake.heads.append(self.path)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:
        self._json(200, {"ok": True}) if self.path.startswith("/api/hello") else self._json(
            404, _error("not_found_error", f"no route {self.path}"))

    def do_POST(self) -> None:
        body = self.read_json()
        if body is None:
            return
        path = self.path.split("?", 1)[0]
        if path == "/v1/messages/count_tokens":
            self._json(200, {"input_tokens": 100})
            return
        if path != "/v1/messages":
            self._json(404, _error("not_found_error", f"no route {path}"))
            return
        fake = self.server_fake
        req, rep, served = fake._begin(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
        if rep.status != 200:
            self._json(rep.status, _error(rep.error_type, "scripted error"), request_id=served.request_id)
            return
        try:
            if req.stream:
                ok = self._stream(req, rep, served)
            else:
                self._json(200, _message(req, rep, served), request_id=served.request_id)
                ok = True
        except (BrokenPipeError, ConnectionResetError):
            ok = False
        fake._finish(served, ok)

    # -- writers --------------------------------------------------------------------------

    def _stream(self, req: Request, rep: Reply, served: Served) -> bool:
        """False when the script cut the stream (the client never gets the end)."""
        self.start_sse(served.request_id)
        events = _sse_events(req, rep, served)
        for event in events[:rep.cut_after]:
            self._chunk(f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode())
            if rep.chunk_delay:
                time.sleep(rep.chunk_delay)
        if rep.cut_after is not None and rep.cut_after < len(events):
            self.close_connection = True
            return False
        self.end_chunks()
        return True


def _error(kind: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": kind, "message": message}}


def _stop_reason(rep: Reply) -> str:
    if rep.stop_reason:
        return rep.stop_reason
    return "tool_use" if any(isinstance(b, ToolUse) for b in rep.blocks) else "end_turn"


def _content(rep: Reply, served: Served) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for b in rep.blocks:
        if isinstance(b, Text):
            out.append({"type": "text", "text": b.text})
        elif isinstance(b, Thinking):
            out.append({"type": "thinking", "thinking": b.text, "signature": "fake-signature"})
        else:
            # A cut call's input is what parses of its unfinished JSON: nothing, here.
            out.append({"type": "tool_use", "id": b.id, "name": b.name,
                        "input": b.input if b.cut_json is None else {}, "_cut_json": b.cut_json})
    return out


def _message(req: Request, rep: Reply, served: Served) -> dict[str, Any]:
    msg = {
        "id": served.message_id,
        "type": "message",
        "role": "assistant",
        "model": served.model,
        "content": [{k: v for k, v in b.items() if k != "_cut_json"} for b in _content(rep, served)],
        "stop_reason": _stop_reason(rep),
        "stop_sequence": None,
        "usage": served.usage.as_api(),
    }
    if rep.omit_usage:
        del msg["usage"]
    return msg


def _sse_events(req: Request, rep: Reply, served: Served) -> list[dict[str, Any]]:
    """The real API's shape: message_start carries the input side (output_tokens 1), every block
    streams as start/delta/stop, message_delta carries the final usage."""
    u = served.usage
    start = _message(req, rep, served) | {"content": [], "stop_reason": None, "usage": u.as_api(output_tokens=1)}
    if rep.omit_usage:
        del start["usage"]
    events: list[dict[str, Any]] = [{"type": "message_start", "message": start}]
    for i, block in enumerate(_content(rep, served)):
        if block["type"] == "text":
            events.append({"type": "content_block_start", "index": i, "content_block": {"type": "text", "text": ""}})
            events.append({"type": "content_block_delta", "index": i,
                           "delta": {"type": "text_delta", "text": block["text"]}})
        elif block["type"] == "thinking":
            events.append({"type": "content_block_start", "index": i,
                           "content_block": {"type": "thinking", "thinking": "", "signature": ""}})
            events.append({"type": "content_block_delta", "index": i,
                           "delta": {"type": "thinking_delta", "thinking": block["thinking"]}})
            events.append({"type": "content_block_delta", "index": i,
                           "delta": {"type": "signature_delta", "signature": block["signature"]}})
        else:
            events.append({"type": "content_block_start", "index": i, "content_block": {
                "type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}})
            sent = block["_cut_json"] if block["_cut_json"] is not None else json.dumps(block["input"])
            events.append({"type": "content_block_delta", "index": i,
                           "delta": {"type": "input_json_delta", "partial_json": sent}})
        events.append({"type": "content_block_stop", "index": i})
    delta: dict[str, Any] = {
        "type": "message_delta",
        "delta": {"stop_reason": _stop_reason(rep), "stop_sequence": None},
        "usage": u.as_api(),
    }
    if rep.omit_usage:
        del delta["usage"]
    events.append(delta)
    events.append({"type": "message_stop"})
    return events


if __name__ == "__main__":  # manual poking: python -m tests.fakes.anthropic_server
    import sys

    with FakeAnthropic(bash_loop() if "--loop" in sys.argv else text_answer()) as f:
        print(f.url, flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
