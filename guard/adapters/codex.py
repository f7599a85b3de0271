"""OpenAI Codex CLI: rollouts in $CODEX_HOME/sessions/YYYY/MM/DD/rollout-*.jsonl.

Codex 0.171 writes a `token_usage_record` line per response (`response_id` and its `usage`) 5-10 ms
after the response completes, so a long tool call never delays metering. Each becomes one event
keyed `resp:<response_id>`, the key the metering proxy gives the same response: the two sources
merge into one call. `event_msg` lines of type `token_count` (`info.last_token_usage`, written only
after the response's tool call ends; `info` may be null) are the fallback for Codex versions
that write no token_usage_record.

Codex's `input_tokens` INCLUDES `cached_input_tokens` and `cache_write_input_tokens`, and
`output_tokens` includes reasoning; both cache parts are moved out of input to match guard's
(Anthropic) convention. The model comes from the latest `turn_context` line of the rollout.

With `--meter proxy`, Codex is sent through guard's proxy with its own `-c` option (it reads no
base URL from its environment), placed after the user's options, since the last `-c` of a key wins
(a subcommand's over the top level's), and before any `--`, after which it would be a prompt.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from guard.adapters.base import EventSink, FollowerAdapter, Launch, LaunchContext, find_executable
from guard.adapters.codex_config import CodexRoute, codex_home, resolve
from guard.pricing import Pricer
from guard.proxy.openai_wire import response_key
from guard.tail import JsonlFollower
from guard.usage import UsageEvent


def _num(d: dict[str, Any], k: str) -> int:
    v = d.get(k)
    return int(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 else 0


def _event(key: str, usage: dict[str, Any], model: str | None) -> UsageEvent:
    total_in = _num(usage, "input_tokens")
    cached = min(_num(usage, "cached_input_tokens"), total_in)
    written = min(_num(usage, "cache_write_input_tokens"), total_in - cached)
    return UsageEvent(key=key, source="codex_rollout", model=model,
                      input_tokens=total_in - cached - written, cache_read_tokens=cached,
                      cache_write_tokens=written, output_tokens=_num(usage, "output_tokens"), steps=1)


def usage_record_event(obj: dict[str, Any], model: str | None) -> UsageEvent | None:
    """The usage of one response from a `token_usage_record` line, or None for any other line."""
    if obj.get("type") != "token_usage_record":
        return None
    payload = obj.get("payload")
    if not isinstance(payload, dict):
        return None
    rid, usage = payload.get("response_id"), payload.get("usage")
    if not isinstance(rid, str) or not rid or not isinstance(usage, dict):
        return None
    return _event(response_key(rid), usage, model)


def token_count_event(obj: dict[str, Any], source_id: str, model: str | None) -> UsageEvent | None:
    """The usage of one turn from a `token_count` line, or None for any other line."""
    if obj.get("type") != "event_msg":
        return None
    payload = obj.get("payload")
    if not isinstance(payload, dict) or payload.get("type") != "token_count":
        return None
    info = payload.get("info")
    if not isinstance(info, dict):
        return None
    last, total = info.get("last_token_usage"), info.get("total_token_usage")
    if not isinstance(last, dict) or not isinstance(total, dict):
        return None
    # the cumulative total only grows: it names this turn, so a re-read never counts it twice
    key = f"codex:{source_id}:{_num(total, 'total_tokens') or _num(total, 'input_tokens') + _num(total, 'output_tokens')}"
    return _event(key, last, model)


def with_options(args: list[str], options: list[str]) -> list[str]:
    """`options` after every option in `args` and before a `--` that ends them."""
    cut = args.index("--") if "--" in args else len(args)
    return [*args[:cut], *options, *args[cut:]]


def unknown_price_warning(model: str, pricer: Pricer) -> str | None:
    """What to tell the user at start, before Codex's first call, when its model has no known
    price (Codex 0.171's default, gpt-6.2-sol, has none); None when the price is known."""
    per_m_in = pricer.price(UsageEvent(key="probe", source="probe", model=model, input_tokens=1_000_000))
    if per_m_in.known:
        return None
    if pricer.unknown == "refuse":
        return (f"codex's model {model!r} has no known price: guard will stop the run at its first call "
                "(unknown_price: refuse); set its price in a prices file")
    per_m_out = pricer.price(UsageEvent(key="probe", source="probe", model=model, output_tokens=1_000_000))
    priciest = per_m_in.basis.removeprefix("max:") or "unknown"
    return (f"codex's model {model!r} has no known price: guard will count each call at {priciest}'s rates "
            f"(${per_m_in.usd:,.2f} / ${per_m_out.usd:,.2f} per million input / output tokens), the most "
            "expensive it knows; set its price in a prices file")


class CodexAdapter(FollowerAdapter):
    name = "codex"

    def start_notices(self, pricer: Any) -> list[tuple[str, str]]:
        model = getattr(self, "model", None)
        warning = unknown_price_warning(model, pricer) if model else None
        return [(f"unknown-price:{model}", warning)] if warning else []

    def __init__(self) -> None:
        self._follower: JsonlFollower | None = None
        self._sink: EventSink | None = None
        self._models: dict[Path, str] = {}
        self._recorded: set[Path] = set()     # rollouts that write token_usage_record lines
        self._root: Path | None = None
        self._notices: list[tuple[str, str]] = []
        self.route: CodexRoute | None = None

    @property
    def model(self) -> str | None:
        """The model Codex was configured to use (for unknown_price_warning at start)."""
        return self.route.model if self.route else None

    def prepare(self, ctx: LaunchContext) -> Launch:
        exe = find_executable("codex", ctx.env, ctx.wrapper_dirs)
        self.route = resolve(ctx.env, ctx.tool_args, ctx.cwd)
        self._root = codex_home(ctx.env) / "sessions"
        self._root.mkdir(parents=True, exist_ok=True)
        return Launch([exe, *with_options(ctx.tool_args, self._proxy_args(ctx, self.route))], dict(ctx.env))

    def _proxy_args(self, ctx: LaunchContext, route: CodexRoute) -> list[str]:
        proxy = ctx.env.get("GUARD_PROXY_URL")
        if ctx.meter != "proxy" or not proxy:
            return []
        if not route.routable:
            self._notices.append((
                "codex-unproxied",
                f"codex's provider {route.provider!r} cannot be routed through guard's metering proxy: "
                "metering from codex's rollouts only"))
            return []
        return route.override_args(f"{proxy}/openai")

    def start(self, sink: EventSink) -> None:
        assert self._root is not None
        self._sink = sink
        for key, message in self._notices:
            sink.notice(key, message)
        # rollouts that exist already belong to earlier sessions: only new lines count
        self._follower = JsonlFollower(self._root, "rollout-*.jsonl", self._on_record, recursive=True,
                                       from_start=False)
        self._follower.start()

    def _on_record(self, path: Path, obj: dict[str, Any]) -> None:
        kind = obj.get("type")
        payload = obj.get("payload")
        if kind == "turn_context" and isinstance(payload, dict) and isinstance(payload.get("model"), str):
            self._models[path] = payload["model"]
            return
        model = self._models.get(path) or self.model
        if kind == "token_usage_record":
            ev = usage_record_event(obj, model)
            if ev is not None:
                self._recorded.add(path)
        elif path in self._recorded:
            return   # a token_count repeats what this rollout's token_usage_records said
        else:
            ev = token_count_event(obj, path.name, model)
        if ev is not None and self._sink is not None:
            self._sink.emit(ev)
