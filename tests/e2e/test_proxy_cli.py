"""`guard --meter proxy ...` end to end: the run loop starts the proxy, the agent goes through it,
the ledger holds the upstream's truth, and the run loop's own gate keeps concurrent requests
under the ceiling."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.anthropic_server import FakeAnthropic, Request, Text, Usage, reply
from tests.tools import REPO, claude_bin

pytestmark = pytest.mark.e2e


def guard(args: list[str], env: dict[str, str], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "guard", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)


def base_env(tmp_path: Path, fake: FakeAnthropic) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC", "OPENAI", "CLAUDE", "GUARD"))}
    env.update(GUARD_HOME=str(tmp_path / "guard-home"), HOME=str(tmp_path), ANTHROPIC_BASE_URL=fake.url,
               ANTHROPIC_API_KEY="sk-ant-dummy", PYTHONPATH=str(REPO))
    return env


def last_run(env: dict[str, str], cwd: Path) -> dict[str, Any]:
    out = guard(["runs", "--json"], env, cwd)
    assert out.returncode == 0, out.stderr
    runs = json.loads(out.stdout)
    return runs[0]


def assert_ledger_is_truth(run: dict[str, Any], fake: FakeAnthropic) -> None:
    truth = fake.usage_totals()
    usage = run["usage"]
    for k in ("input_tokens", "output_tokens", "cache_write_tokens", "cache_read_tokens"):
        assert usage[k] == truth[k], k


AGENT = textwrap.dedent("""
    import sys, threading, anthropic
    client = anthropic.Anthropic(max_retries=0)
    results = []
    def call(i):
        try:
            with client.messages.stream(model="claude-sonnet-4-5", max_tokens=400,
                                        messages=[{"role": "user", "content": "go " * 50}]) as s:
                s.get_final_message()
            results.append(200)
        except anthropic.APIStatusError as e:
            results.append(e.status_code)
    n, parallel = int(sys.argv[1]), sys.argv[2] == "parallel"
    if parallel:
        ts = [threading.Thread(target=call, args=(i,)) for i in range(n)]
        [t.start() for t in ts]; [t.join() for t in ts]
    else:
        for i in range(n):
            call(i)
    print("results", sorted(results))
""")


def test_guard_run_through_proxy_records_the_upstream_truth(tmp_path: Path) -> None:
    (tmp_path / "agent.py").write_text(AGENT)
    with FakeAnthropic() as fake:
        env = base_env(tmp_path, fake)
        out = guard(["--meter", "proxy", "run", "--", sys.executable, "agent.py", "3", "serial"], env, tmp_path)
        assert out.returncode == 0, out.stderr[-2000:]
        run = last_run(env, tmp_path)
    assert "results [200, 200, 200]" in out.stdout
    assert_ledger_is_truth(run, fake)
    assert run["usage"]["steps"] == 3


def test_guard_run_gate_holds_twenty_concurrent_requests_under_a_ceiling_that_fits_five(tmp_path: Path) -> None:
    from guard.pricing import Pricer
    from guard.proxy.anthropic_wire import estimate

    # What the proxy will reserve for one of the agent's requests (same body, same estimate).
    body = {"max_tokens": 400, "messages": [{"role": "user", "content": "go " * 50}],
            "model": "claude-sonnet-4-5", "stream": True}
    est = estimate(json.dumps(body).encode(), body)
    worst = Pricer().worst_case("claude-sonnet-4-5", est.input_tokens, est.max_output_tokens)

    def script(req: Request):  # each answer costs close to its reservation
        return reply(Text("ok"), usage=Usage(input_tokens=int(est.input_tokens * 0.9), output_tokens=400),
                     chunk_delay=0.05)

    (tmp_path / "agent.py").write_text(AGENT)
    with FakeAnthropic(script) as fake:
        env = base_env(tmp_path, fake)
        out = guard(["--meter", "proxy", "--max-usd", f"{worst * 5.5:.6f}", "run", "--",
                     sys.executable, "agent.py", "20", "parallel"], env, tmp_path)
        run = last_run(env, tmp_path)
    assert run["usage"]["cost_usd"] <= worst * 5.5 + 1e-6, out.stdout + out.stderr
    assert len(fake.requests) <= 6                      # the rest were refused before leaving guard
    # a refused request means the run is at its ceiling: it is halted like any other crossing
    assert out.returncode == 124 and run["halt"]["ceiling"] == "usd", out.stderr
    assert_ledger_is_truth(run, fake)


def test_guard_claude_through_proxy_records_the_upstream_truth(tmp_path: Path) -> None:
    from tests.fakes.anthropic_server import ToolUse, sequence

    script = sequence([reply(Text("Running."), ToolUse("Bash", {"command": "echo hi", "description": "x"}))])
    work = tmp_path / "work"
    work.mkdir()
    with FakeAnthropic(script) as fake:
        env = base_env(tmp_path, fake) | {"CLAUDE_CONFIG_DIR": str(tmp_path / ".claude")}
        env["PATH"] = str(Path(claude_bin()).parent) + os.pathsep + env.get("PATH", "")
        out = guard(["--meter", "proxy", "claude", "-p", "run one command", "--allowedTools", "Bash"], env, work)
        assert out.returncode == 0, out.stderr[-2000:]
        run = last_run(env, work)
    assert fake.usage_totals()["calls"] == 2
    assert_ledger_is_truth(run, fake)
