"""What an adapter reports (UsageEvent) and how reports of one model call merge.

Token fields follow Anthropic's convention: `input_tokens` EXCLUDES cache reads and writes.
Adapters for OpenAI-style sources must subtract cached tokens before building an event.
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field


@dataclass(frozen=True)
class UsageEvent:
    # Idempotency key within a run: the same key reported twice (a replayed file, a second source
    # for the same API request) is one model call. Prefer the provider's request/message id.
    key: str
    source: str
    model: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cache_write_tokens: int = 0       # all cache writes, 5-minute and 1-hour
    cache_write_1h_tokens: int = 0    # the part of cache_write_tokens billed at the 1-hour rate
    cache_read_tokens: int = 0
    cost_usd: float | None = None     # stated by the tool itself; None means "price the tokens"
    steps: int = 0                    # agent steps (tool calls, or model calls for tools without tools)
    estimated: bool = False           # the tool's own estimate, not the provider's count
    interrupted: bool = False         # a call that started and never reported its end
    ts: float = field(default_factory=time.time)

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens + self.cache_write_tokens + self.cache_read_tokens

    def merge(self, other: UsageEvent) -> UsageEvent:
        """Two reports of one call: keep the max of each field (early transcript lines carry
        placeholder counts; a second source may see what the first missed)."""
        def mx(a: int, b: int) -> int:
            return a if a >= b else b

        cost: float | None
        if self.cost_usd is None:
            cost = other.cost_usd
        elif other.cost_usd is None:
            cost = self.cost_usd
        else:
            cost = max(self.cost_usd, other.cost_usd)
        return dataclasses.replace(
            self,
            model=self.model if self.model and self.model != "<synthetic>" else other.model,
            input_tokens=mx(self.input_tokens, other.input_tokens),
            output_tokens=mx(self.output_tokens, other.output_tokens),
            cache_write_tokens=mx(self.cache_write_tokens, other.cache_write_tokens),
            cache_write_1h_tokens=mx(self.cache_write_1h_tokens, other.cache_write_1h_tokens),
            cache_read_tokens=mx(self.cache_read_tokens, other.cache_read_tokens),
            cost_usd=cost,
            steps=mx(self.steps, other.steps),
            estimated=self.estimated and other.estimated,
            interrupted=self.interrupted and other.interrupted,
            source=self.source if self.source == other.source else f"{self.source}+{other.source}"
            if other.source not in self.source.split("+") else self.source,
        )


@dataclass
class Totals:
    input_tokens: int = 0
    output_tokens: int = 0
    cache_write_tokens: int = 0
    cache_read_tokens: int = 0
    cost_usd: float = 0.0
    steps: int = 0
    calls: int = 0

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens + self.cache_write_tokens + self.cache_read_tokens

    def add(self, ev: UsageEvent, cost: float, sign: int = 1) -> None:
        self.input_tokens += sign * ev.input_tokens
        self.output_tokens += sign * ev.output_tokens
        self.cache_write_tokens += sign * ev.cache_write_tokens
        self.cache_read_tokens += sign * ev.cache_read_tokens
        self.cost_usd += sign * cost
        self.steps += sign * ev.steps
        self.calls += sign

    def plus(self, other: Totals) -> Totals:
        return Totals(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cache_write_tokens + other.cache_write_tokens,
            self.cache_read_tokens + other.cache_read_tokens,
            self.cost_usd + other.cost_usd,
            self.steps + other.steps,
            self.calls + other.calls,
        )

    def as_dict(self) -> dict[str, float | int]:
        return {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cache_write_tokens": self.cache_write_tokens,
            "cache_read_tokens": self.cache_read_tokens,
            "cost_usd": round(self.cost_usd, 6),
            "steps": self.steps,
        }


def from_anthropic_usage(
    key: str, source: str, usage: dict[str, object], model: str | None = None, **extra: object
) -> UsageEvent:
    """Build an event from an Anthropic-shaped `usage` object (transcripts, proxy, usage file)."""
    def num(name: str, src: dict[str, object] = usage) -> int:
        v = src.get(name)
        if type(v) is int:   # the common case, first: bulk imports call this for every response
            return v if v > 0 else 0
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            return 0  # 1e400 parses as inf: a broken count is no count, not a crash
        return max(0, int(v))

    cache_creation = usage.get("cache_creation")
    write_1h = num("ephemeral_1h_input_tokens", cache_creation) if isinstance(cache_creation, dict) else 0
    return UsageEvent(
        key=key,
        source=source,
        model=model,
        input_tokens=num("input_tokens"),
        output_tokens=num("output_tokens"),
        cache_write_tokens=num("cache_creation_input_tokens"),
        cache_write_1h_tokens=write_1h,
        cache_read_tokens=num("cache_read_input_tokens"),
        **extra,  # type: ignore[arg-type]
    )
