"""Prompt-cache reads a request will most likely get, predicted from the same conversation's
previous request: the part of a conversation's prompt the provider cached last time is read from
the cache next time, at a tenth of the input rate, while the cache entry lives (5 minutes from
its last use, or 1 hour when the request asks for it).

The worst case of a request may count those tokens at the read rate: the one under-count the
input estimate allows is a cache miss nobody could foresee (the entry evicted early, another
replica). A miss costs at most `predicted x (write rate - read rate)` more than was reserved."""
from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

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
    head = json.dumps([req.get("model"), req.get("system"), messages[0]], sort_keys=True, default=str)
    return hashlib.sha256(head.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class _Last:
    cached_prefix: int    # tokens the provider read or wrote to the cache for the previous request
    at: float             # when that request ended
    ttl: float


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

    def observe(self, key: str | None, cache_read_tokens: int, cache_write_tokens: int, now: float,
                one_hour: bool = False) -> None:
        """The provider's own usage of a finished request of this conversation."""
        if key is None:
            return
        prefix = cache_read_tokens + cache_write_tokens
        with self._lock:
            if prefix <= 0:
                self._last.pop(key, None)   # nothing cached (caching off, or below the minimum)
                return
            self._last[key] = _Last(prefix, now, ONE_HOUR if one_hour else FIVE_MINUTES)
            self._last.move_to_end(key)
            while len(self._last) > self.max:
                self._last.popitem(last=False)
