"""Shared by the rollup tests: a random history of writes that replays and grows events, and the
comparison of run_usage with the raw sums of events."""
from __future__ import annotations

import random
from typing import Any

from guard.ledger.sql import SqlLedger
from guard.usage import UsageEvent

MODELS = ("claude-opus-4-5", "claude-haiku-4-5", None)


def random_writes(seed: int, runs: list[str], n: int) -> list[tuple[str, UsageEvent, float, bool]]:
    """n writes over few keys: most keys written several times, figures growing (max-merge) or
    repeated unchanged (replays), a model learned late."""
    rng = random.Random(seed)
    figures: dict[tuple[str, str], UsageEvent] = {}
    out = []
    for i in range(n):
        run = rng.choice(runs)
        key = f"req:{rng.randrange(n // 3 + 1)}"
        prev = figures.get((run, key))
        if prev is not None and rng.random() < 0.4:
            ev = prev                                   # a replay: same figures again
        else:
            base = prev or UsageEvent(key=key, source="t", model=None, ts=1_790_000_000 + i)
            ev = UsageEvent(key=key, source="t", model=base.model or rng.choice(MODELS),
                            input_tokens=base.input_tokens + rng.randrange(0, 500),
                            output_tokens=base.output_tokens + rng.randrange(0, 300),
                            cache_write_tokens=base.cache_write_tokens + rng.randrange(0, 50),
                            cache_read_tokens=base.cache_read_tokens + rng.randrange(0, 900),
                            steps=max(base.steps, rng.randrange(0, 3)), estimated=rng.random() < 0.2,
                            ts=base.ts)
        figures[(run, key)] = ev
        out.append((run, ev, round(ev.tokens * 1e-6, 9), True))
    return out


def rollup_vs_raw(led: SqlLedger) -> tuple[dict[Any, tuple[Any, ...]], dict[Any, tuple[Any, ...]]]:
    cols = "input_tokens, output_tokens, cache_write_tokens, cache_write_1h_tokens, cache_read_tokens"
    rolled = {(r[0], r[1]): (*[int(v) for v in r[2:7]], round(float(r[7]), 6), int(r[8]), int(r[9]), int(r[10]))
              for r in led._execute(f"SELECT run_id, model, {cols}, cost_usd, steps, calls, estimated_calls "
                                    "FROM run_usage WHERE calls <> 0")}
    raw = {(r[0], r[1]): (*[int(v) for v in r[2:7]], round(float(r[7]), 6), int(r[8]), int(r[9]), int(r[10]))
           for r in led._execute(
               "SELECT run_id, COALESCE(model, ''), SUM(input_tokens), SUM(output_tokens), "
               "SUM(cache_write_tokens), SUM(cache_write_1h_tokens), SUM(cache_read_tokens), SUM(cost_usd), "
               "SUM(steps), COUNT(*), SUM(estimated) FROM events GROUP BY run_id, COALESCE(model, '')")}
    return rolled, raw
