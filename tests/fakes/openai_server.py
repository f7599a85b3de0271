"""A fake OpenAI-compatible API on 127.0.0.1 that scripts the model and records the truth.

Real agents (aider through litellm, guard's metering proxy) are pointed at it with its base URL
(`fake.url`, which ends in `/v1`). It answers Chat Completions (`POST /v1/chat/completions`,
streaming as SSE with a final usage chunk when `stream_options.include_usage` is asked, or one
JSON body) and, minimally, the Responses API (`POST /v1/responses`). Every answer carries an
`x-request-id` header and a usage object the test chose; the server records exactly what it
returned, so a test can compare guard's ledger with it.

    with FakeOpenAI(script=[say("hi"), failing_edit("hello.py")]) as fake:
        ... run aider with --openai-api-base fake.url ...
        fake.usage_totals(main_only=True)   # what was really "billed" for main-model calls
        fake.served                         # one Served per answered request, in order

A script is a callable `(Request) -> Reply`, or a list of replies (strings are plain text) that
main-model requests get in order (`sequence`). Side calls aider makes with its weak model (commit
messages, chat summaries) are recognised by their system prompt and answered by `aux` instead, so a
script only has to describe the main conversation.

The server honours the output cap (`max_completion_tokens` or `max_tokens`; `max_output_tokens` on
the Responses API): a reply whose usage has more completion tokens is cut to that share of its
text, with `finish_reason: "length"` (Responses: status `incomplete`) and the cut output billed.
"""
from __future__ import annotations

import dataclasses
import itertools
import json
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from tests.fakes.base import FakeServer, JsonHandler

# --------------------------------------------------------------------------------------------
# What a script returns


@dataclass(frozen=True)
class Usage:
    """OpenAI convention: `prompt_tokens` INCLUDES `cached_tokens` (a subset)."""

    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0
    # Anthropic-style extras some gateways add (litellm passes them through; aider then prints
    # its two-line "cache write / cache hit" report). Sent only when non-zero.
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def as_chat(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
            "prompt_tokens_details": {"cached_tokens": self.cached_tokens, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
        }
        if self.cache_creation_input_tokens:
            out["cache_creation_input_tokens"] = self.cache_creation_input_tokens
        if self.cache_read_input_tokens:
            out["cache_read_input_tokens"] = self.cache_read_input_tokens
        return out

    def as_responses(self) -> dict[str, Any]:
        return {
            "input_tokens": self.prompt_tokens,
            "input_tokens_details": {"cached_tokens": self.cached_tokens},
            "output_tokens": self.completion_tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": self.total_tokens,
        }


@dataclass(frozen=True)
class Reply:
    text: str = "ok"
    usage: Usage | None = None      # None: the server's usage function decides
    delay: float = 0.0              # seconds before the response starts (a slow model)
    chunk_delay: float = 0.0        # seconds between SSE chunks (a slow stream)
    chunks: int = 4                 # how many content deltas a streamed text is cut into
    status: int = 200               # != 200: an API error of `error_type`
    error_type: str = "server_error"
    finish_reason: str = "stop"
    omit_usage: bool = False        # a server that never reports usage (include_usage ignored)
    cut_after: int | None = None    # a stream the upstream drops after this many SSE events


def say(text: str, **kw: Any) -> Reply:
    return Reply(text=text, **kw)


# -- aider edit blocks ------------------------------------------------------------------------


def edit_block(path: str, search: str, replace: str, intro: str = "Here is the change.") -> str:
    """An aider SEARCH/REPLACE block (diff edit format). An empty `search` creates the file."""
    return (
        f"{intro}\n\n{path}\n```\n<<<<<<< SEARCH\n{search}"
        f"{'' if not search or search.endswith(chr(10)) else chr(10)}"
        f"=======\n{replace}{'' if replace.endswith(chr(10)) else chr(10)}>>>>>>> REPLACE\n```\n"
    )


def create_file(path: str, content: str, **kw: Any) -> Reply:
    return Reply(text=edit_block(path, "", content, intro=f"I will create {path}."), **kw)


def failing_edit(path: str, n: int = 0, **kw: Any) -> Reply:
    """An edit whose SEARCH text is not in the file: aider reports the failed match and sends
    the error back to the model by itself (a "reflection"), up to 3 times per user message."""
    return Reply(
        text=edit_block(path, f"text that is not in the file {n}\n", f"replacement {n}\n",
                        intro="Let me fix that."),
        **kw,
    )


# --------------------------------------------------------------------------------------------
# What a script sees


AUX_MARKERS = {
    "commit": "generates concise, one-line Git commit messages",
    "summary": "summarize this partial conversation",
}


def cut_at_max_tokens(rep: Reply, usage: Usage, cap: int | None) -> tuple[Reply, Usage]:
    if cap is None or usage.completion_tokens <= cap:
        return rep, usage
    keep = len(rep.text) * cap // max(1, usage.completion_tokens)
    return (dataclasses.replace(rep, text=rep.text[:keep], finish_reason="length"),
            dataclasses.replace(usage, completion_tokens=cap))


def _output_cap(api: str, body: dict[str, Any]) -> int | None:
    names = ("max_output_tokens",) if api == "responses" else ("max_completion_tokens", "max_tokens")
    for name in names:
        v = body.get(name)
        if isinstance(v, int) and not isinstance(v, bool):
            return v
    return None


@dataclass
class Request:
    n: int                     # 1-based over every completion request this server answered
    api: str                   # "chat" or "responses"
    path: str
    headers: dict[str, str]
    body: dict[str, Any]

    @property
    def stream(self) -> bool:
        return bool(self.body.get("stream"))

    @property
    def include_usage(self) -> bool:
        opts = self.body.get("stream_options")
        return isinstance(opts, dict) and bool(opts.get("include_usage"))

    @property
    def model(self) -> str:
        return str(self.body.get("model") or "gpt-4o")

    @property
    def messages(self) -> list[dict[str, Any]]:
        key = "messages" if self.api == "chat" else "input"
        raw = self.body.get(key)
        if isinstance(raw, str):
            return [{"role": "user", "content": raw}]
        return [m for m in raw or [] if isinstance(m, dict)]

    @staticmethod
    def _text(msg: dict[str, Any]) -> str:
        c = msg.get("content")
        if isinstance(c, str):
            return c
        parts = []
        for b in c or []:
            if isinstance(b, dict) and isinstance(b.get("text"), str):
                parts.append(b["text"])
        return "\n".join(parts)

    def texts(self, role: str) -> list[str]:
        return [self._text(m) for m in self.messages if m.get("role") == role]

    @property
    def system_text(self) -> str:
        extra = [str(self.body["instructions"])] if self.body.get("instructions") else []
        return "\n".join(extra + self.texts("system"))

    @property
    def user_text(self) -> str:
        return "\n".join(self.texts("user"))

    @property
    def last_user_text(self) -> str:
        users = self.texts("user")
        return users[-1] if users else ""

    @property
    def kind(self) -> str:
        """'commit' / 'summary' for aider's weak-model side calls, else 'main'."""
        sys_text = self.system_text
        for kind, marker in AUX_MARKERS.items():
            if marker in sys_text:
                return kind
        return "main"


@dataclass
class Served:
    n: int
    request_id: str
    response_id: str
    api: str
    model: str
    kind: str
    usage: Usage
    stream: bool
    usage_sent: bool                   # False: a stream without include_usage (client saw none)
    started_at: float
    text: str = ""
    finished_at: float | None = None   # time.time() when the last byte was written
    completed: bool = False            # False: the client went away before the end
    status: int = 200
    finish_reason: str = "stop"


Script = Callable[[Request], Reply]
UsageFn = Callable[[Request], Usage]


def default_usage(req: Request) -> Usage:
    """Deterministic, distinct per request, and large enough that aider prints `k` figures."""
    return Usage(prompt_tokens=12000 + 7 * req.n, completion_tokens=300 + req.n)


# --------------------------------------------------------------------------------------------
# Scripts


def text_answer(text: str = "Done. No changes needed.") -> Script:
    return lambda req: Reply(text=text)


def sequence(replies: Iterable[Reply | str], then: Script | None = None) -> Script:
    """Main-model requests get `replies` in order, then `then` (default: a plain text answer)."""
    it = iter([Reply(text=r) if isinstance(r, str) else r for r in replies])
    lock = threading.Lock()
    fallback = then or text_answer()

    def script(req: Request) -> Reply:
        with lock:
            nxt = next(it, None)
        return nxt if nxt is not None else fallback(req)
    return script


def always_failing_edits(path: str, **kw: Any) -> Script:
    """A runaway: every main-model request gets another edit that does not apply."""
    return lambda req: failing_edit(path, req.n, **kw)


def default_aux(req: Request) -> Reply:
    if req.kind == "commit":
        return Reply(text="feat: fake commit message")
    return Reply(text="I asked you to do things and you did them.")


# --------------------------------------------------------------------------------------------
# The server


class FakeOpenAI(FakeServer):
    name = "fake-openai"
    requests: list[Request]
    served: list[Served]

    def __init__(
        self,
        script: Script | Sequence[Reply | str] | None = None,
        *,
        usage: UsageFn = default_usage,
        aux: Script | None = default_aux,
        on_served: Callable[[Served], None] | None = None,
    ) -> None:
        """aux=None sends aider's side calls through `script` too."""
        super().__init__(on_served)
        if script is None:
            script = text_answer()
        elif not callable(script):
            script = sequence(script)
        self.script: Script = script
        self.aux = aux
        self.usage_fn = usage
        self.gets: list[str] = []

    # -- lifecycle --------------------------------------------------------------------------

    def handler_base(self) -> type[JsonHandler]:
        return _Handler

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """What OpenAI clients call the base URL (`OPENAI_BASE_URL`, `--openai-api-base`)."""
        return f"{self.base_url}/v1"

    # -- the truth --------------------------------------------------------------------------

    def completed(self, main_only: bool = False) -> list[Served]:
        with self._lock:
            return [s for s in self.served if s.completed and (s.kind == "main" or not main_only)]

    def usage_totals(self, main_only: bool = False) -> dict[str, int]:
        """Tokens of every response fully delivered (a response cut off by a kill is not in it).
        `input_tokens` here EXCLUDES cached tokens (guard's convention); `prompt_tokens` is raw."""
        tot = {"prompt_tokens": 0, "input_tokens": 0, "output_tokens": 0, "cached_tokens": 0,
               "calls": 0}
        for s in self.completed(main_only):
            tot["prompt_tokens"] += s.usage.prompt_tokens
            tot["input_tokens"] += s.usage.prompt_tokens - s.usage.cached_tokens
            tot["output_tokens"] += s.usage.completion_tokens
            tot["cached_tokens"] += s.usage.cached_tokens
            tot["calls"] += 1
        return tot

    def wait_served(self, count: int, timeout: float = 30.0, main_only: bool = False) -> bool:
        """Wait until `count` responses have been fully delivered."""
        return self.wait_until(lambda: sum(1 for s in self.served if s.completed
                                           and (s.kind == "main" or not main_only)) >= count, timeout)

    def wait_requests(self, count: int, timeout: float = 30.0) -> bool:
        """Wait until `count` completion requests have arrived (answered or not)."""
        return self.wait_until(lambda: len(self.requests) >= count, timeout)

    # -- used by the handler ----------------------------------------------------------------

    def _begin(self, api: str, path: str, headers: dict[str, str], body: dict[str, Any]
               ) -> tuple[Request, Reply, Served]:
        with self._cond:
            n = next(self._counter)
            req = Request(n, api, path, headers, body)
            self.requests.append(req)
            self._cond.notify_all()
        kind = req.kind
        rep = self.aux(req) if (self.aux is not None and kind != "main") else self.script(req)
        rep, usage = cut_at_max_tokens(rep, rep.usage or self.usage_fn(req), _output_cap(api, body))
        served = Served(
            n=n,
            request_id=f"req_{self.token}{n:04d}",
            response_id=f"{'chatcmpl' if api == 'chat' else 'resp'}-{self.token}{n:04d}",
            api=api,
            model=req.model,
            kind=kind,
            usage=usage,
            stream=req.stream,
            usage_sent=not rep.omit_usage and ((not req.stream) or req.include_usage or api == "responses"),
            started_at=time.time(),
            text=rep.text,
            status=rep.status,
            finish_reason=rep.finish_reason,
        )
        if rep.status == 200:
            with self._lock:
                self.served.append(served)
        return req, rep, served


class _Handler(JsonHandler):
    server_fake: FakeOpenAI

    def error_body(self, kind: str, message: str) -> dict[str, Any]:
        return _error(kind, message)

    def do_GET(self) -> None:
        fake = self.server_fake
        fake.gets.append(self.path)
        if self.path.split("?", 1)[0] in ("/v1/models", "/models"):
            self._json(200, {"object": "list", "data": [
                {"id": "gpt-4o", "object": "model", "created": 0, "owned_by": "fake"}]})
        else:
            self._json(404, _error("not_found", f"no route {self.path}"))

    def do_POST(self) -> None:
        body = self.read_json()
        if body is None:
            return
        path = self.path.split("?", 1)[0]
        if path.endswith("/chat/completions"):
            api = "chat"
        elif path.endswith("/responses"):
            api = "responses"
        else:
            self._json(404, _error("not_found", f"no route {path}"))
            return
        fake = self.server_fake
        req, rep, served = fake._begin(api, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
        ok = False
        try:
            if rep.delay:
                time.sleep(rep.delay)
            if rep.status != 200:
                self._json(rep.status, _error(rep.error_type, "scripted error"), request_id=served.request_id)
                return
            ok = True
            if api == "chat":
                if req.stream:
                    ok = self._sse([("", c) for c in _chat_chunks(req, rep, served)], rep, served, done=True)
                else:
                    self._json(200, _chat_body(rep, served), request_id=served.request_id)
            else:
                if req.stream:
                    ok = self._sse(_responses_events(rep, served), rep, served, done=False)
                else:
                    self._json(200, _responses_body(rep, served), request_id=served.request_id)
        except (BrokenPipeError, ConnectionResetError):
            ok = False
        finally:
            if rep.status == 200:
                fake._finish(served, ok)

    # -- writers --------------------------------------------------------------------------

    def _sse(self, events: list[tuple[str, dict[str, Any]]], rep: Reply, served: Served, done: bool) -> bool:
        """False when the script cut the stream (the client never gets the end)."""
        self.start_sse(served.request_id)
        for name, obj in events[:rep.cut_after]:
            head = f"event: {name}\n" if name else ""
            self._chunk(f"{head}data: {json.dumps(obj)}\n\n".encode())
            if rep.chunk_delay:
                time.sleep(rep.chunk_delay)
        if rep.cut_after is not None and rep.cut_after < len(events):
            self.close_connection = True
            return False
        if done:
            self._chunk(b"data: [DONE]\n\n")
        self.end_chunks()
        return True


def _error(kind: str, message: str) -> dict[str, Any]:
    return {"error": {"type": kind, "code": kind, "message": message, "param": None}}


def _pieces(text: str, n: int) -> list[str]:
    n = max(1, min(n, len(text) or 1))
    size = -(-len(text) // n) if text else 1
    return [text[i:i + size] for i in range(0, len(text), size)] or [""]


def _chat_body(rep: Reply, served: Served) -> dict[str, Any]:
    return {
        "id": served.response_id,
        "object": "chat.completion",
        "created": int(served.started_at),
        "model": served.model,
        "system_fingerprint": "fp_fake",
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": rep.text, "refusal": None},
            "logprobs": None,
            "finish_reason": rep.finish_reason,
        }],
        "usage": None if rep.omit_usage else served.usage.as_chat(),
    }


def _chat_chunks(req: Request, rep: Reply, served: Served) -> list[dict[str, Any]]:
    base = {"id": served.response_id, "object": "chat.completion.chunk", "created": int(served.started_at),
            "model": served.model, "system_fingerprint": "fp_fake"}

    def chunk(delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
        c = base | {"choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}
        if req.include_usage:
            c["usage"] = None
        return c

    out = [chunk({"role": "assistant", "content": ""}, None)]
    out += [chunk({"content": piece}, None) for piece in _pieces(rep.text, rep.chunks)]
    out.append(chunk({}, rep.finish_reason))
    if req.include_usage and not rep.omit_usage:
        out.append(base | {"choices": [], "usage": served.usage.as_chat()})
    return out


def _responses_body(rep: Reply, served: Served, status: str | None = None) -> dict[str, Any]:
    final = status is None
    status = status or ("incomplete" if rep.finish_reason == "length" else "completed")
    return {
        "id": served.response_id,
        "object": "response",
        "created_at": int(served.started_at),
        "status": status,
        "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
        "model": served.model,
        "output": [{
            "type": "message",
            "id": f"msg_{served.response_id}",
            "status": "completed",
            "role": "assistant",
            "content": [{"type": "output_text", "text": rep.text, "annotations": []}],
        }],
        "usage": served.usage.as_responses() if final and not rep.omit_usage else None,
    }


def _responses_events(rep: Reply, served: Served) -> list[tuple[str, dict[str, Any]]]:
    seq = itertools.count()
    created = _responses_body(rep, served, status="in_progress") | {"output": []}
    events: list[tuple[str, dict[str, Any]]] = [
        ("response.created", {"type": "response.created", "response": created}),
    ]
    item_id = f"msg_{served.response_id}"
    for piece in _pieces(rep.text, rep.chunks):
        events.append(("response.output_text.delta", {
            "type": "response.output_text.delta", "item_id": item_id, "output_index": 0,
            "content_index": 0, "delta": piece}))
    events.append(("response.output_text.done", {
        "type": "response.output_text.done", "item_id": item_id, "output_index": 0,
        "content_index": 0, "text": rep.text}))
    end = "response.incomplete" if rep.finish_reason == "length" else "response.completed"
    events.append((end, {"type": end, "response": _responses_body(rep, served)}))
    return [(name, obj | {"sequence_number": next(seq)}) for name, obj in events]


if __name__ == "__main__":  # manual poking: python -m tests.fakes.openai_server
    import sys

    with FakeOpenAI(always_failing_edits("hello.py") if "--loop" in sys.argv else None) as f:
        print(f.url, flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
