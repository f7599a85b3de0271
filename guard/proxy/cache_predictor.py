"""Prompt-cache reads a request will most likely get, predicted from the same conversation's
previous request: the part of a conversation's prompt the provider cached last time is read from
the cache next time, at a tenth of the input rate, while the cache entry lives (5 minutes from
its last use, or 1 hour when the request asks for it).

The worst case of a request may count those tokens at the read rate: the one under-count the
input estimate allows is a cache miss nobody could foresee (the entry evicted early, another
replica). A miss costs at most `predicted x (write rate - read rate)` more than was reserved.

The previous request also calibrates the input estimate: its prompt (input, cache reads and
writes, as billed) is the new request's prefix, so only the bytes added since are estimated at
the conservative bytes-per-token rate. That keeps the estimate of a long conversation near its
billed count (the JSON-size estimate runs 1.2-1.4x high, and would cross a long-context tier a
request never reaches). It never goes above the JSON-size estimate, and a request smaller than
the previous one (a compacted or cleared conversation) is not calibrated."""
from __future__ import annotations

import hashlib
import json
import math
import threading
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Any

from guard.proxy.wire import Estimate, bytes_per_token
from guard.usage import UsageEvent

FIVE_MINUTES = 300.0
ONE_HOUR = 3600.0


def conversation_key(req: Any) -> str | None:
    """One conversation's requests share their model, system prompt and first message (each
    turn appends to the messages). A sub-agent or side call has its own first message."""
    if not isinstance(req, dict):
        return None
    messages = req.get("messages")
    if not isinstance(messages, list) or not messages:
        return None
    head = json.dumps(_unmarked([req.get("model"), req.get("system"), messages[0]]), sort_keys=True, default=str)
    return hashlib.sha256(head.encode()).hexdigest()[:32]


def _unmarked(value: Any) -> Any:
    """Without cache breakpoints: a client moves them to the newest message each turn (the first
    request marks its only message), and that does not make it another conversation."""
    if isinstance(value, dict):
        return {k: _unmarked(v) for k, v in value.items() if k != "cache_control"}
    if isinstance(value, list):
        return [_unmarked(v) for v in value]
    return value


@dataclass(frozen=True)
class _Last:
    cached_prefix: int    # tokens the provider read or wrote to the cache for the previous request
    at: float             # when that request ended
    ttl: float
    prompt_tokens: int = 0   # the previous request's whole prompt as billed (0: unknown)
    body_bytes: int = 0      # and the size of its JSON


@dataclass(frozen=True)
class Seen:
    """What a request was, for `observe_usage` once its response is in."""

    key: str | None
    body_bytes: int


class CachePredictor:
    """Per conversation, what the previous request left in the cache. Thread-safe, bounded."""

    def __init__(self, max_conversations: int = 1024) -> None:
        self.max = max_conversations
        self._last: OrderedDict[str, _Last] = OrderedDict()
        self._lock = threading.Lock()

    def predict(self, key: str | None, input_tokens: int, now: float) -> int:
        """Cache-read tokens to expect of a request whose whole input is estimated at
        `input_tokens` (caches included); 0 for a new conversation or an expired entry."""
        if key is None:
            return 0
        with self._lock:
            last = self._last.get(key)
        if last is None or now - last.at > last.ttl:
            return 0
        return max(0, min(last.cached_prefix, input_tokens))

    def refine(self, est: Estimate, req: Any, body_bytes: int, now: float) -> tuple[Estimate, Seen]:
        """`est` with its input calibrated on the conversation's previous request and the cache
        reads that request left; and what to hand `observe_usage` for this one."""
        key = conversation_key(req)
        seen = Seen(key, body_bytes)
        if key is None:
            return est, seen
        with self._lock:
            last = self._last.get(key)
        if last is None:
            return est, seen
        tokens = est.input_tokens
        if last.prompt_tokens > 0 and body_bytes >= last.body_bytes:
            added = math.ceil((body_bytes - last.body_bytes) / bytes_per_token(est.model))
            tokens = min(tokens, last.prompt_tokens + added)
        reads = 0 if now - last.at > last.ttl else max(0, min(last.cached_prefix, tokens))
        return replace(est, input_tokens=tokens, cache_read_tokens=reads), seen

    def observe_usage(self, seen: Seen, ev: UsageEvent, now: float) -> None:
        """A finished request's usage. An estimated one (no provider count) teaches nothing and
        leaves nothing to predict from."""
        if seen.key is None:
            return
        if ev.estimated:
            with self._lock:
                self._last.pop(seen.key, None)
            return
        self.observe(seen.key, ev.cache_read_tokens, ev.cache_write_tokens, now,
                     one_hour=ev.cache_write_1h_tokens > 0,
                     prompt_tokens=ev.input_tokens + ev.cache_read_tokens + ev.cache_write_tokens,
                     body_bytes=seen.body_bytes)

    def observe(self, key: str | None, cache_read_tokens: int, cache_write_tokens: int, now: float,
                one_hour: bool = False, prompt_tokens: int = 0, body_bytes: int = 0) -> None:
        """The provider's own usage of a finished request of this conversation."""
        if key is None:
            return
        prefix = cache_read_tokens + cache_write_tokens
        with self._lock:
            if prefix <= 0 and prompt_tokens <= 0:
                self._last.pop(key, None)   # nothing cached (caching off, or below the minimum)
                return
            self._last[key] = _Last(max(0, prefix), now, ONE_HOUR if one_hour else FIVE_MINUTES,
                                    prompt_tokens, body_bytes)
            self._last.move_to_end(key)
            while len(self._last) > self.max:
                self._last.popitem(last=False)
