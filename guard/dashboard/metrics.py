"""The Prometheus exposition of /metrics, from a ledger snapshot and the live runs.

Series carry developer, team, tool and model (or ceiling) labels and never a run id or a machine,
so every dashboard over one shared ledger exports the same series with the same values: Grafana
can take `max without (instance)` and count nothing twice.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector, CollectorRegistry

from guard.dashboard.data import MetricTotals

TOKEN_KINDS = ("input", "output", "cache_write", "cache_read")


class LedgerCollector(Collector):
    """The ledger's counters and the period budgets: one snapshot's worth."""

    def __init__(self, totals: MetricTotals, budgets: Iterable[dict[str, Any]]) -> None:
        self.totals = totals
        self.budgets = list(budgets)

    def collect(self) -> Iterator[Metric]:
        labels = ["developer", "team", "tool", "model"]
        spend = CounterMetricFamily("guard_spend_usd", "Spend recorded in the ledger, USD", labels=labels)
        tokens = CounterMetricFamily("guard_tokens", "Tokens recorded in the ledger", labels=[*labels, "kind"])
        for key, (usd, *kinds) in sorted(self.totals.usage.items()):
            spend.add_metric(list(key), usd)
            for kind, n in zip(TOKEN_KINDS, kinds, strict=True):
                tokens.add_metric([*key, kind], n)
        yield spend
        yield tokens
        halts = CounterMetricFamily("guard_halts", "Runs halted or refused by a ceiling",
                                    labels=["developer", "team", "tool", "ceiling"])
        for key, n in sorted(self.totals.halts.items()):
            halts.add_metric(list(key), n)
        yield halts
        runs = CounterMetricFamily("guard_runs", "Runs recorded, by status",
                                   labels=["developer", "team", "tool", "status"])
        for key, n in sorted(self.totals.runs.items()):
            runs.add_metric(list(key), n)
        yield runs
        remaining = GaugeMetricFamily("guard_budget_remaining_usd",
                                      "What is left of a developer or team ceiling this period, USD",
                                      labels=["scope", "name", "period", "ceiling"])
        limit = GaugeMetricFamily("guard_budget_limit_usd", "A developer or team ceiling this period, USD",
                                  labels=["scope", "name", "period", "ceiling"])
        for b in self.budgets:
            scope = [b["scope"], b["name"], b["period"], b["ceiling"]]
            remaining.add_metric(scope, b["remaining_usd"])
            limit.add_metric(scope, b["limit_usd"])
        yield remaining
        yield limit


class LiveCollector(Collector):
    """The runs going on now, read at each scrape."""

    def __init__(self, live: Sequence[dict[str, Any]]) -> None:
        self.live = live

    def collect(self) -> Iterator[Metric]:
        labels = ["developer", "team", "tool"]
        count: dict[tuple[str, ...], int] = defaultdict(int)
        spend: dict[tuple[str, ...], float] = defaultdict(float)
        left: dict[tuple[str, ...], float] = defaultdict(float)
        for r in self.live:
            key = (r["developer"], r["team"] or "", r["tool"])
            count[(*key, r["status"])] += 1
            spend[key] += r["spend_usd"]
            if r["remaining_usd"] is not None:
                left[key] += r["remaining_usd"]
        active = GaugeMetricFamily("guard_active_runs", "Runs going on now", labels=[*labels, "status"])
        for k, n in sorted(count.items()):
            active.add_metric(list(k), n)
        yield active
        live = GaugeMetricFamily("guard_active_spend_usd", "What the runs going on now have spent, USD",
                                 labels=labels)
        for k, v in sorted(spend.items()):
            live.add_metric(list(k), v)
        yield live
        rem = GaugeMetricFamily("guard_active_remaining_usd",
                                "What the runs going on now may still spend under their USD ceilings",
                                labels=labels)
        for k, v in sorted(left.items()):
            rem.add_metric(list(k), v)
        yield rem


def _text(collector: Collector) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return generate_latest(registry)


def ledger_exposition(totals: MetricTotals, budgets: Iterable[dict[str, Any]]) -> bytes:
    return _text(LedgerCollector(totals, budgets))


def live_exposition(live: Sequence[dict[str, Any]]) -> bytes:
    return _text(LiveCollector(live))
