"""What an adapter reports (UsageEvent) and how reports of one model call merge.

Token fields follow Anthropic's convention: `input_tokens` EXCLUDES cache reads and writes.
Adapters for OpenAI-style sources must subtract cached tokens before building an event.
"""
from __future__ import annotations

import dataclasses
import hashlib
import math
import re
import time
from dataclasses import dataclass, field

MAX_COUNT = 10**9   # tokens of one field of one call: more is stored as this, and flagged
MAX_KEY_CHARS = 200
# A count the agent could not state (negative, NaN, a word) is counted at the run's largest call
# so far, and never below these: the first call of a run has no "largest" to lean on.
UNREADABLE_FLOOR = {"input_tokens": 100_000, "output_tokens": 10_000,
                    "cache_write_tokens": 0, "cache_read_tokens": 0}
_JSON_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?", re.ASCII)
_UNSAFE_TEXT = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")


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

    def __post_init__(self) -> None:
        # Whatever an adapter built, the ledger gets a key and model it can store (PostgreSQL
        # refuses NUL and lone surrogates) and counts its integer columns hold.
        # (checked together first: this runs for every usage line, and almost every one is fine)
        key, model = self.key, self.model
        if len(key) > MAX_KEY_CHARS or _UNSAFE_TEXT.search(key):
            object.__setattr__(self, "key", safe_key(key))
        if model is not None and (len(model) > MAX_KEY_CHARS or _UNSAFE_TEXT.search(model)):
            object.__setattr__(self, "model", safe_text(model))
        counts = (self.input_tokens, self.output_tokens, self.cache_write_tokens, self.cache_write_1h_tokens,
                  self.cache_read_tokens, self.steps)
        if max(counts) > MAX_COUNT or min(counts) < 0:
            for name in ("input_tokens", "output_tokens", "cache_write_tokens", "cache_write_1h_tokens",
                         "cache_read_tokens", "steps"):
                v = getattr(self, name)
                if v > MAX_COUNT:
                    object.__setattr__(self, name, MAX_COUNT)
                    object.__setattr__(self, "estimated", True)
                elif v < 0:
                    object.__setattr__(self, name, 0)
        if self.cost_usd is not None and not (math.isfinite(self.cost_usd) and self.cost_usd >= 0):
            object.__setattr__(self, "cost_usd", None)
            object.__setattr__(self, "estimated", True)

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


def safe_text(text: str, limit: int = MAX_KEY_CHARS) -> str:
    """`text` with control characters and lone surrogates replaced, at most `limit` chars."""
    return _UNSAFE_TEXT.sub("\ufffd", text[:limit])


def safe_key(key: str) -> str:
    """An idempotency key any ledger can store; distinct keys stay distinct (a key that needs
    cleaning is replaced by a digest of itself)."""
    if len(key) <= MAX_KEY_CHARS and not _UNSAFE_TEXT.search(key):
        return key
    raw = key.encode("utf-8", "surrogatepass")
    return "sha:" + hashlib.blake2b(raw, digest_size=16).hexdigest()


class Unreadable(ValueError):
    """A count or amount that is present but is no number guard can count."""


def parse_number(v: object) -> float | None:
    """A JSON number, or a string holding one in JSON's grammar (ASCII digits only).
    None for an absent value (missing or null); Unreadable for anything else, NaN included.
    Infinity is a number: larger than any cap, never an error."""
    if v is None:
        return None
    if isinstance(v, bool):
        raise Unreadable(f"a boolean ({v})")
    if isinstance(v, int):
        return float(v) if abs(v) < 10**300 else (math.inf if v > 0 else -math.inf)
    if isinstance(v, float):
        if math.isnan(v):
            raise Unreadable("NaN")
        return v
    if isinstance(v, str):
        text = v.strip(" \t")
        if not _JSON_NUMBER.fullmatch(text):
            raise Unreadable(f"not a number ({safe_text(v, 40)!r})")
        return float(text)  # '1e999' is inf: a huge number, capped by the caller
    raise Unreadable(f"a {type(v).__name__}")


def parse_count(v: object) -> tuple[int, str | None]:
    """A token count: (count, problem). Fractions round up; above MAX_COUNT is MAX_COUNT with a
    problem; absent is 0. Raises Unreadable for negatives, NaN and non-numbers."""
    if type(v) is int and 0 <= v <= MAX_COUNT:
        return v, None  # the common case, first: this runs for every field of every line
    n = parse_number(v)
    if n is None:
        return 0, None
    if n < 0:
        raise Unreadable(f"negative ({safe_text(str(v), 40)})")
    if n > MAX_COUNT:
        return MAX_COUNT, f"above {MAX_COUNT:,} ({safe_text(str(v), 40)}), counted as {MAX_COUNT:,}"
    return math.ceil(n), None


@dataclass(frozen=True)
class Largest:
    """The largest value each token field has had in one call of the run so far (run state,
    kept by whoever keeps the run's calls; `observe` each event as it is recorded)."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_write_tokens: int = 0
    cache_read_tokens: int = 0

    def observe(self, ev: UsageEvent) -> Largest:
        if (ev.input_tokens <= self.input_tokens and ev.output_tokens <= self.output_tokens
                and ev.cache_write_tokens <= self.cache_write_tokens
                and ev.cache_read_tokens <= self.cache_read_tokens):
            return self   # the common case: no new largest, nothing to build
        return Largest(max(self.input_tokens, ev.input_tokens), max(self.output_tokens, ev.output_tokens),
                       max(self.cache_write_tokens, ev.cache_write_tokens),
                       max(self.cache_read_tokens, ev.cache_read_tokens))

    def stand_in(self, name: str) -> int:
        return max(getattr(self, name), UNREADABLE_FLOOR[name])


USAGE_FIELDS = (("input_tokens", "input_tokens"), ("output_tokens", "output_tokens"),
                ("cache_creation_input_tokens", "cache_write_tokens"),
                ("cache_read_input_tokens", "cache_read_tokens"))


def from_anthropic_usage(
    key: str, source: str, usage: dict[str, object], model: str | None = None,
    largest: Largest | None = None, problems: list[str] | None = None, **extra: object
) -> UsageEvent:
    """Build an event from an Anthropic-shaped `usage` object (transcripts, proxy, usage file).
    A count that cannot be read is never 0: it counts as the run's largest call so far
    (`largest`; the floor without it), is described in `problems` and marks the event estimated,
    as does a count above MAX_COUNT."""
    found: list[str] = []
    counts: dict[str, int] = {}
    for wire, name in USAGE_FIELDS:
        try:
            counts[name], problem = parse_count(usage.get(wire))
        except Unreadable as e:
            counts[name] = (largest or Largest()).stand_in(name)
            problem = f"{e}, counted as {counts[name]:,}"
        if problem:
            found.append(f"{wire}: {problem}")
    cache_creation = usage.get("cache_creation")
    write_1h = 0
    if isinstance(cache_creation, dict):
        try:
            write_1h, _ = parse_count(cache_creation.get("ephemeral_1h_input_tokens"))
        except Unreadable:
            write_1h = counts["cache_write_tokens"]  # all of it at the dearer rate
    if problems is not None:
        problems.extend(found)
    stated_estimate = bool(extra.pop("estimated", False))
    estimated = bool(found) or stated_estimate
    return UsageEvent(
        key=key,
        source=source,
        model=model,
        input_tokens=counts["input_tokens"],
        output_tokens=counts["output_tokens"],
        cache_write_tokens=counts["cache_write_tokens"],
        cache_write_1h_tokens=min(write_1h, counts["cache_write_tokens"]),
        cache_read_tokens=counts["cache_read_tokens"],
        estimated=estimated,
        **extra,  # type: ignore[arg-type]
    )
