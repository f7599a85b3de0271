"""Codex's rollouts: token_usage_record as it lands (keyed by response id, like the proxy's event),
token_count only for versions that write no records, cache reads and writes out of input."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from guard.adapters.base import LaunchContext, Remaining
from guard.adapters.codex import (
    CodexAdapter,
    token_count_event,
    unknown_price_warning,
    usage_record_event,
    with_options,
)
from guard.adapters.codex_config import CodexRoute
from guard.pricing import Pricer, Rates
from guard.proxy.openai_wire import response_key
from guard.usage import UsageEvent
from tests.fakes.proxy_upstreams import RecordingSink
from tests.helpers import wait_until

USAGE = {"input_tokens": 20_000, "cached_input_tokens": 4_000, "cache_write_input_tokens": 1_000,
         "output_tokens": 300, "reasoning_output_tokens": 100, "total_tokens": 20_300}


def record(response_id: str, usage: dict[str, int] = USAGE) -> dict[str, object]:
    return {"type": "token_usage_record", "payload": {"thread_id": "t", "turn_id": "u", "response_id": response_id,
                                                      "usage": usage, "turn_token_usage": usage}}


def token_count(last: dict[str, int], total: dict[str, int]) -> dict[str, object]:
    return {"type": "event_msg", "payload": {"type": "token_count", "info": {
        "last_token_usage": last, "total_token_usage": total}}}


def turn_context(model: str) -> dict[str, object]:
    return {"type": "turn_context", "payload": {"turn_id": "u", "model": model}}


def test_a_record_is_one_response_keyed_like_the_proxy() -> None:
    ev = usage_record_event(record("resp_1"), "gpt-5")
    assert ev is not None
    assert ev.key == response_key("resp_1") == "resp:resp_1"
    # Codex's input includes cache reads and writes; guard's excludes both
    assert (ev.input_tokens, ev.cache_read_tokens, ev.cache_write_tokens, ev.output_tokens) == (15_000, 4_000, 1_000, 300)
    assert (ev.model, ev.steps) == ("gpt-5", 1)


def test_token_count_moves_cache_out_of_input_and_keys_by_cumulative_total() -> None:
    last = {"input_tokens": 1000, "cached_input_tokens": 600, "cache_write_input_tokens": 100,
            "output_tokens": 50, "total_tokens": 1050}
    ev = token_count_event(token_count(last, last), "rollout-1.jsonl", "gpt-5-codex")
    assert ev is not None
    assert (ev.input_tokens, ev.cache_read_tokens, ev.cache_write_tokens, ev.output_tokens) == (300, 600, 100, 50)
    assert ev.key == "codex:rollout-1.jsonl:1050"


def test_other_lines_and_broken_counts_are_ignored() -> None:
    assert token_count_event({"type": "event_msg", "payload": {"type": "token_count", "info": None}}, "r", None) is None
    assert token_count_event({"type": "response_item", "payload": {}}, "r", None) is None
    assert usage_record_event({"type": "token_usage_record", "payload": {"usage": USAGE}}, None) is None
    broken = usage_record_event(record("r", {"input_tokens": -5, "cached_input_tokens": 9, "output_tokens": True}), None)
    assert broken is not None and broken.tokens == 0


def adapter_with(sink: RecordingSink) -> CodexAdapter:
    a = CodexAdapter()
    a._sink = sink
    return a


def test_after_a_record_the_same_rollouts_token_counts_are_not_counted_again(tmp_path: Path) -> None:
    sink = RecordingSink()
    a = adapter_with(sink)
    new, old = tmp_path / "rollout-new.jsonl", tmp_path / "rollout-old.jsonl"
    a._on_record(new, turn_context("gpt-5"))
    a._on_record(new, record("resp_1"))
    a._on_record(new, token_count(USAGE, USAGE))          # written after the tool: a repeat
    # an older Codex writes no records: its token_count is the only signal
    a._on_record(old, turn_context("gpt-4.1"))
    a._on_record(old, token_count(USAGE, USAGE))
    assert [(e.key, e.model) for e in sink.events] == [("resp:resp_1", "gpt-5"), ("codex:rollout-old.jsonl:20300", "gpt-4.1")]


def test_a_record_before_any_turn_context_gets_the_configured_model(tmp_path: Path) -> None:
    sink = RecordingSink()
    a = adapter_with(sink)
    a.route = CodexRoute("openai", "https://api.openai.com/v1", "gpt-6.2-sol", "openai_base_url")
    a._on_record(tmp_path / "rollout-child.jsonl", record("resp_9"))
    assert sink.events[0].model == "gpt-6.2-sol"


def ctx(tmp_path: Path, args: list[str], meter: str, codex_home: Path, **env: str) -> LaunchContext:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    exe = bin_dir / "codex"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    return LaunchContext(run_id="r", tool_args=args, env={"PATH": str(bin_dir), "CODEX_HOME": str(codex_home), **env},
                         run_dir=tmp_path, state_path=tmp_path / "state.json", cwd=tmp_path, started_at=0.0,
                         interactive=False, remaining=Remaining(), meter=meter)


def test_proxy_mode_routes_codex_with_its_own_option_after_the_users(tmp_path: Path) -> None:
    home = tmp_path / "ch"
    home.mkdir()
    args = ["exec", "-c", "openai_base_url=https://mine/v1", "--", "prompt with -c in it"]
    launch = CodexAdapter().prepare(ctx(tmp_path, args, "proxy", home, GUARD_PROXY_URL="http://127.0.0.1:9/s/codex"))
    assert launch.argv[1:] == ["exec", "-c", "openai_base_url=https://mine/v1",
                               "-c", 'openai_base_url="http://127.0.0.1:9/s/codex/openai"', "--", "prompt with -c in it"]
    native = CodexAdapter().prepare(ctx(tmp_path, args, "native", home, GUARD_PROXY_URL="http://x/s/codex"))
    assert native.argv[1:] == args
    assert (home / "sessions").is_dir()


def test_a_provider_the_proxy_cannot_route_is_said_and_metered_from_rollouts(tmp_path: Path) -> None:
    home = tmp_path / "ch"
    home.mkdir()
    a = CodexAdapter()
    launch = a.prepare(ctx(tmp_path, ["--oss", "exec", "hi"], "proxy", home, GUARD_PROXY_URL="http://x/s/codex"))
    assert launch.argv[1:] == ["--oss", "exec", "hi"]
    sink = RecordingSink()
    a.start(sink)
    try:
        assert [k for k, _ in sink.notices] == ["codex-unproxied"]
    finally:
        a.close()


def test_with_options_goes_before_the_end_of_options() -> None:
    assert with_options(["exec", "hi"], ["-c", "k=v"]) == ["exec", "hi", "-c", "k=v"]
    assert with_options(["exec", "--", "hi"], ["-c", "k=v"]) == ["exec", "-c", "k=v", "--", "hi"]


def test_records_are_metered_as_they_land_in_a_new_rollout(tmp_path: Path) -> None:
    home = tmp_path / "ch"
    home.mkdir()
    a = CodexAdapter()
    a.prepare(ctx(tmp_path, ["exec", "hi"], "native", home))
    sink = RecordingSink()
    a.start(sink)
    try:
        day = home / "sessions" / "2026" / "12" / "01"
        day.mkdir(parents=True)
        with open(day / "rollout-x.jsonl", "a") as f:
            f.write(json.dumps(turn_context("gpt-5")) + "\n")
            f.write(json.dumps(record("resp_a")) + "\n")
            f.flush()
            wait_until(lambda: sink.events, timeout=10, message="the record's event")
    finally:
        a.close()
    assert [e.key for e in sink.events] == ["resp:resp_a"]


def test_unknown_price_warning_names_the_rates_it_will_use() -> None:
    assert unknown_price_warning("gpt-5", Pricer()) is None
    assert unknown_price_warning("gpt-6.2-sol", Pricer({"gpt-6.2-sol": Rates(1e-6, 2e-6)})) is None
    pricer = Pricer()
    msg = unknown_price_warning("gpt-6.2-sol", pricer)
    assert msg is not None
    assert msg.startswith("codex's model 'gpt-6.2-sol' has no known price")
    # the rates it names are the ones the meter will charge
    per_m_in = pricer.price(UsageEvent(key="k", source="s", model="gpt-6.2-sol", input_tokens=1_000_000))
    per_m_out = pricer.price(UsageEvent(key="k", source="s", model="gpt-6.2-sol", output_tokens=1_000_000))
    assert per_m_in.basis.removeprefix("max:") in msg
    assert f"${per_m_in.usd:,.2f} / ${per_m_out.usd:,.2f} per million" in msg and "prices file" in msg
    refuse = unknown_price_warning("gpt-6.2-sol", Pricer(unknown="refuse"))
    assert refuse is not None and "stop the run at its first call" in refuse


@pytest.mark.parametrize("model", ["gpt-6.2-sol", "codex-nova-9"])
def test_unknown_models_are_said_whatever_their_name(model: str) -> None:
    assert unknown_price_warning(model, Pricer()) is not None
