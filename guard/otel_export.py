"""OpenTelemetry metrics over OTLP at the end of a run, when the user configures an endpoint.

Configured by guard's own environment: GUARD_OTEL_EXPORTER_OTLP_ENDPOINT (or the standard
OTEL_EXPORTER_OTLP_METRICS_ENDPOINT / OTEL_EXPORTER_OTLP_ENDPOINT as guard itself was started with;
the ones guard injects into Claude Code live only in the child's environment and are never read).
GUARD_OTEL_EXPORTER_OTLP_HEADERS / OTEL_EXPORTER_OTLP_HEADERS add headers (k=v,k=v).

The export never delays exit: `export_run` hands the numbers to a detached process and returns;
that process imports the SDK, sends once (delta temporality: each run adds its own increments)
and exits, within its own timeout.
"""
from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping
from typing import Any

from guard.ledger.records import RunRecord
from guard.ledger.sql import SqlLedger

TIMEOUT_S = 10.0


def endpoint(env: Mapping[str, str]) -> str | None:
    """The OTLP/HTTP metrics URL, or None when the user has not asked for an export."""
    if env.get("GUARD_OTEL_METRICS_EXPORTER", env.get("OTEL_METRICS_EXPORTER", "otlp")) == "none":
        return None
    for key in ("GUARD_OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"):
        if env.get(key):
            return env[key]
    for key in ("GUARD_OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"):
        if env.get(key):
            return env[key].rstrip("/") + "/v1/metrics"
    return None


def headers(env: Mapping[str, str]) -> dict[str, str]:
    raw = env.get("GUARD_OTEL_EXPORTER_OTLP_HEADERS") or env.get("OTEL_EXPORTER_OTLP_HEADERS") or ""
    out = {}
    for part in raw.split(","):
        k, sep, v = part.partition("=")
        if sep and k.strip():
            out[k.strip()] = v.strip()
    return out


def payload(run: RunRecord, model_costs: Mapping[str, tuple[float, int]]) -> dict[str, Any]:
    """The numbers one run adds: spend and tokens by model, a halt, what was left of its USD ceiling."""
    attrs = {"developer": run.developer, "team": run.team or "", "tool": run.tool}
    u = run.usage
    budget = run.limits.get("usd")
    return {
        "attributes": attrs,
        "by_model": {m: list(v) for m, v in model_costs.items()} or {"(unknown)": [u.cost_usd, u.tokens]},
        "tokens": {"input": u.input_tokens, "output": u.output_tokens, "cache_write": u.cache_write_tokens,
                   "cache_read": u.cache_read_tokens},
        "halt": run.halt.ceiling if run.halt else None,
        "remaining_usd": max(0.0, budget - u.cost_usd) if budget is not None else None,
    }


def model_costs(ledger: SqlLedger, run_id: str) -> dict[str, tuple[float, int]]:
    """model -> (USD, tokens) of one run."""
    rows = ledger._execute(
        "SELECT COALESCE(model, ''), SUM(cost_usd), SUM(input_tokens + output_tokens + cache_write_tokens "
        "+ cache_read_tokens) FROM events WHERE run_id = ? GROUP BY model", (run_id,))
    return {(m or "(unknown)"): (float(c or 0), int(t or 0)) for m, c, t in rows}


def export_run(ledger: SqlLedger, run_id: str, env: Mapping[str, str]) -> bool:
    """At run end, once the run's final record is written: start the detached export when one is
    configured (nothing is read otherwise). True when one was started."""
    url = endpoint(env)
    if url is None:
        return False
    run = ledger.get_run(run_id)
    job = json.dumps({"endpoint": url, "headers": headers(env), "metrics": payload(run, model_costs(ledger, run_id))})
    try:
        proc = subprocess.Popen([sys.executable, "-m", "guard.otel_export"], stdin=subprocess.PIPE,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                                close_fds=True)
        assert proc.stdin is not None
        proc.stdin.write(job.encode())
        proc.stdin.close()
    except OSError:
        return False  # metrics are a courtesy: a failed export never fails the run
    return True


def send(job: Mapping[str, Any]) -> None:
    """In the detached process: one OTLP/HTTP export of the run's increments."""
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.sdk.metrics import Counter, MeterProvider, UpDownCounter
    from opentelemetry.sdk.metrics.export import AggregationTemporality, PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import Resource

    exporter = OTLPMetricExporter(endpoint=job["endpoint"], headers=job["headers"], timeout=TIMEOUT_S,
                                  preferred_temporality={Counter: AggregationTemporality.DELTA,
                                                         UpDownCounter: AggregationTemporality.DELTA})
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
    provider = MeterProvider(resource=Resource.create({"service.name": "guard"}), metric_readers=[reader])
    meter = provider.get_meter("guard")
    m = job["metrics"]
    attrs = m["attributes"]
    spend = meter.create_counter("guard.spend", unit="USD", description="Spend of finished runs")
    tokens = meter.create_counter("guard.tokens", unit="{token}", description="Tokens of finished runs")
    runs = meter.create_counter("guard.runs", unit="{run}", description="Finished runs")
    for model, (usd, _tokens) in m["by_model"].items():
        spend.add(float(usd), {**attrs, "model": model})
    for kind, n in m["tokens"].items():
        tokens.add(int(n), {**attrs, "kind": kind})
    runs.add(1, attrs)
    if m["halt"]:
        meter.create_counter("guard.halts", unit="{halt}", description="Runs halted by a ceiling").add(
            1, {**attrs, "ceiling": m["halt"]})
    if m["remaining_usd"] is not None:
        meter.create_histogram("guard.budget.remaining", unit="USD",
                               description="What was left of a run's USD ceiling at its end").record(
            float(m["remaining_usd"]), attrs)
    provider.force_flush(timeout_millis=int(TIMEOUT_S * 1000))
    provider.shutdown(timeout_millis=int(TIMEOUT_S * 1000))


if __name__ == "__main__":
    send(json.loads(sys.stdin.read()))
