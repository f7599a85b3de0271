"""The real Codex CLI (pinned @openai/codex) under the real `guard` CLI, against the fake Responses API.

Every run gets its own CODEX_HOME (whose config.toml points Codex at the fake, as a user's points
it at their gateway), GUARD_HOME and working directory; `codex exec --skip-git-repo-check -s
workspace-write` runs with stdin closed. The model is Codex's default, priced by a prices file.
The bill is the fake's log of the responses it delivered; the ledger must equal it, every
response counted once whichever sources (proxy, token_usage_record, token_count) saw it.
"""
from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from guard.adapters.codex_config import DEFAULT_MODEL
from guard.ledger import open_ledger
from guard.supervisor.tree import scan_proc
from tests.fakes.responses_server import FakeResponses, Script, Served, Usage, forever, run, say
from tests.helpers import guard_cmd, guard_env, last_run
from tests.tools import codex_bin

pytestmark = pytest.mark.e2e

RATES = {"input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6,
         "cache_read_input_token_cost": 1e-7, "cache_creation_input_token_cost": 1.25e-6}
# 100k tokens a response (about $0.10): a usd or tokens ceiling is crossed by the second response,
# or (through the proxy, which reserves each request's worst case first) the second is refused.
RESPONSE = Usage(input_tokens=100_000, output_tokens=500, cached_tokens=4_000, cache_write_tokens=1_000,
                 reasoning_tokens=200)
MODES = ["native", "proxy", "auto"]


def billed_as_sent(req: Any) -> Usage:
    """A bill a real tokenizer could give: the request's input at 4 bytes a token (the proxy's
    estimate may not under-count that), and a long answer, cut at the request's allowance."""
    cap = req.body.get("max_output_tokens")   # the API stops the answer at the allowance it was given
    out = min(20_000, cap) if isinstance(cap, int) else 20_000
    return Usage(input_tokens=len(json.dumps(req.body)) // 4, output_tokens=out, reasoning_tokens=min(200, out))
SANDBOX = "[sandbox_workspace_write]\nexclude_slash_tmp = true\nexclude_tmpdir_env_var = true\n"
TOKEN_KINDS = ("input_tokens", "cache_read_tokens", "cache_write_tokens", "output_tokens")


@dataclass
class World:
    root: Path
    guard_home: Path
    codex_home: Path
    work: Path
    prices: Path
    codex: str

    def configure(self, config: str) -> None:
        # Codex's sandbox mounts a read-only `.git` into each writable root, /tmp included, where
        # it shows as an empty /tmp/.git while a command runs: keep it to the test's directory.
        (self.codex_home / "config.toml").write_text(config + SANDBOX)

    def env(self) -> dict[str, str]:
        env = guard_env(self.guard_home, CODEX_HOME=str(self.codex_home), OPENAI_API_KEY="sk-fake-key")
        for k in list(env):    # a developer's own settings must not leak in
            if k.startswith(("OPENAI_", "CODEX_")) and k not in ("OPENAI_API_KEY", "CODEX_HOME"):
                del env[k]
        env["PATH"] = os.pathsep.join([str(Path(self.codex).parent), env.get("PATH", "")])
        return env

    def guard(self, *options: str, prompt: str = "do the task", timeout: float = 120) -> subprocess.CompletedProcess[str]:
        argv = guard_cmd("--prices", str(self.prices), *options, "codex", "exec", "--skip-git-repo-check",
                         "-s", "workspace-write", prompt)
        return subprocess.run(argv, env=self.env(), cwd=self.work, stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=timeout, check=False)

    def events(self, run_id: str) -> list[Any]:
        ledger = open_ledger(None, self.guard_home)
        try:
            return [ev for ev, _, _ in ledger.run_events(run_id)]
        finally:
            ledger.close()


@pytest.fixture()
def world(tmp_path: Path) -> World:
    codex = codex_bin()
    w = World(tmp_path, tmp_path / "guard-home", tmp_path / "codex-home", tmp_path / "work",
              tmp_path / "prices.json", codex)
    for d in (w.codex_home, w.work):
        d.mkdir()
    w.prices.write_text(json.dumps({DEFAULT_MODEL: RATES}))
    return w


def bill_cost(served: list[Served]) -> float:
    usd = 0.0
    for s in served:
        u = s.usage
        usd += ((u.input_tokens - u.cached_tokens - u.cache_write_tokens) * RATES["input_cost_per_token"]
                + u.cached_tokens * RATES["cache_read_input_token_cost"]
                + u.cache_write_tokens * RATES["cache_creation_input_token_cost"]
                + u.output_tokens * RATES["output_cost_per_token"])
    return usd


def assert_ledger_is_the_bill(world: World, fake: FakeResponses, run: dict[str, Any]) -> None:
    """Tokens of every kind and dollars as billed; one event per delivered response, keyed by its id."""
    bill = fake.bill()
    usage = run["usage"]
    assert {k: usage[k] for k in TOKEN_KINDS} == {k: bill[k] for k in TOKEN_KINDS}
    assert usage["cost_usd"] == pytest.approx(bill_cost(fake.completed()), abs=1e-6)
    assert usage["steps"] == bill["calls"]
    assert sorted(e.key for e in world.events(run["id"])) == sorted(f"resp:{s.response_id}" for s in fake.completed())


def run_processes(run_id: str) -> list[int]:
    """Live processes of the run (every descendant of the agent carries its GUARD_RUN_ID)."""
    marker = f"GUARD_RUN_ID={run_id}".encode()
    return [p.pid for p in scan_proc(marker) if p.marked and p.state != "Z"]


# -- each ceiling in each meter mode ----------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("ceiling,option,script", [
    ("usd", ["--max-usd", "0.15"], forever(run("sleep 0.5"))),
    ("tokens", ["--max-tokens", "150k"], forever(run("sleep 0.5"))),
    ("steps", ["--max-steps", "2"], forever(run("sleep 0.5", usage=RESPONSE))),
    # the clock runs out while a long tool runs: no response is in flight when it does
    ("time", ["--max-time", "5s"], forever(run("sleep 60", usage=RESPONSE))),
])
def test_runaway_halted_at_each_ceiling(world: World, mode: str, ceiling: str, option: list[str],
                                        script: Script) -> None:
    """A Codex that never stops calling tools: guard halts it at the ceiling, exits 124, leaves no
    process behind, and the ledger is the bill. The fake refuses WebSockets with 426, as guard's
    proxy does, so native runs do not spend 6 s on WebSocket retries (the 404 case is tested below)."""
    with FakeResponses(script, ws_status=426, usage=billed_as_sent) as fake:
        world.configure(f'openai_base_url = "{fake.url}"\n')
        proc = world.guard("--meter", mode, *option)
        run_record = last_run(world.guard_home, world.env())
        assert proc.returncode == 124, proc.stderr[-3000:]
        assert run_record["tool"] == "codex" and run_record["status"] == "halted"
        assert run_record["halt"]["ceiling"] == ceiling, run_record["halt"]
        assert fake.completed(), "codex never got an answer"
        assert_ledger_is_the_bill(world, fake, run_record)
    usage = run_record["usage"]
    if ceiling == "steps":
        assert usage["steps"] == 2
    if ceiling in ("usd", "tokens") and mode == "proxy":
        # the proxy refused the request that would have crossed it: nothing was spent past it
        used = usage["cost_usd"] if ceiling == "usd" else sum(usage[k] for k in TOKEN_KINDS)
        assert used <= run_record["halt"]["limit"]
    assert run_processes(run_record["id"]) == []


# -- a slow tool in flight, killed --------------------------------------------------------------


@pytest.mark.parametrize("mode", ["native", "proxy"])
def test_crossing_response_halts_with_the_slow_tool_still_running(world: World, mode: str) -> None:
    """The response that crosses the ceiling starts an 8 s tool: Codex writes its usage record
    as the response lands, so guard kills the tree in the middle of the tool, not after it."""
    marker = world.work / "tool-finished"
    crossing = run(f"sleep 8 && touch {marker}", usage=Usage(input_tokens=300_000, output_tokens=100))
    with FakeResponses([crossing, say("done")], ws_status=426) as fake:
        world.configure(f'openai_base_url = "{fake.url}"\n')
        proc = world.guard("--meter", mode, "--max-usd", "0.15", "--on-limit", "kill")
        run_record = last_run(world.guard_home, world.env())
        assert proc.returncode == 124, proc.stderr[-3000:]
        assert run_record["halt"]["ceiling"] == "usd" and run_record["halt"]["action"] == "kill"
        assert len(fake.requests) == 1          # Codex never came back with the tool's output
        assert_ledger_is_the_bill(world, fake, run_record)
        assert run_record["accuracy"] == "exact"
    assert run_processes(run_record["id"]) == []
    assert not marker.exists()


# -- a whole session, exact ---------------------------------------------------------------------


@pytest.mark.parametrize("provider", ["openai_base_url", "provider entry"])
def test_proxy_session_is_exact_and_answers_the_websocket_itself(world: World, provider: str) -> None:
    """Through the proxy, with Codex's config pointing at the fake either way a user sets a
    gateway: every response counted once (the proxy's event and Codex's record merged), cache
    writes and reads priced, and Codex's WebSocket attempt never reaches the fake (which would
    answer it with 404 and cost 7 retries)."""
    with FakeResponses([run("echo one > one.txt"), run("echo two > two.txt"), say("All done.")]) as fake:
        if provider == "openai_base_url":
            world.configure(f'openai_base_url = "{fake.url}"\n')
        else:
            world.configure(f'model_provider = "gateway"\n[model_providers.gateway]\nname = "Gateway"\n'
                            f'base_url = "{fake.url}"\nenv_key = "OPENAI_API_KEY"\nwire_api = "responses"\n')
        proc = world.guard("--meter", "proxy", "--max-usd", "5")
        run_record = last_run(world.guard_home, world.env())
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert "All done." in proc.stdout
        assert (world.work / "two.txt").read_text() == "two\n"
        assert fake.gets == []
        assert len(fake.completed()) == 3
        assert_ledger_is_the_bill(world, fake, run_record)
        assert all(set(e.source.split("+")) == {"proxy", "codex_rollout"} for e in world.events(run_record["id"]))
        assert run_record["usage"]["cache_write_tokens"] == 3 * 1_000


def test_native_session_with_the_websocket_refused_by_404_is_exact(world: World) -> None:
    """Straight to the fake, which answers Codex's WebSocket with 404: Codex retries, falls back
    to HTTP, and guard meters every response from the rollout, reasoning tokens included."""
    with FakeResponses([run("echo hi > hi.txt"), say("Finished.")], bill_path=world.root / "bill.jsonl") as fake:
        world.configure(f'openai_base_url = "{fake.url}"\n')
        proc = world.guard("--meter", "native", "--max-usd", "5")
        run_record = last_run(world.guard_home, world.env())
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert len(fake.gets) > 1                      # the WebSocket attempts, retried on 404
        assert_ledger_is_the_bill(world, fake, run_record)
        logged = [json.loads(line) for line in (world.root / "bill.jsonl").read_text().splitlines()]
        assert [b["response_id"] for b in logged] == [s.response_id for s in fake.completed()]
        assert {e.source for e in world.events(run_record["id"])} == {"codex_rollout"}
