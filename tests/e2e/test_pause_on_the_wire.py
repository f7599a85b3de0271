"""Pause on the wire: the request that does not fit is held, not refused, while the run is
paused; a raise forwards it and the agent goes on as if nothing had happened. SIGSTOP does not
stop the client's clocks: a held request whose client gave up meanwhile is dropped, never sent,
and the client's retry goes through instead."""
from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.fakes.anthropic_server import FakeAnthropic, Text, Usage, reply
from tests.helpers import guard_cmd, guard_env, runs_json, wait_until

pytestmark = pytest.mark.e2e

AGENT = textwrap.dedent("""
    import sys, anthropic
    # a short timeout: the pause below outlasts it, as it would outlast Claude Code's first-byte watchdog
    client = anthropic.Anthropic(timeout=float(sys.argv[1]), max_retries=3)
    for i in range(4):
        m = client.messages.create(model="claude-sonnet-4-5", max_tokens=4096,
                                   messages=[{"role": "user", "content": f"step {i}"}])
        print("answered", i, m.content[0].text, flush=True)
    print("agent done", flush=True)
""")


def start(home: Path, fake: FakeAnthropic, agent: Path, timeout: str) -> subprocess.Popen[str]:
    env = guard_env(home, ANTHROPIC_BASE_URL=fake.url, ANTHROPIC_API_KEY="sk-ant-test")
    # each call bills 1,000 in + 4,000 out at Sonnet's $3/$15, $0.063: after two, $0.024 is left, below the floor
    return subprocess.Popen(guard_cmd("--meter", "proxy", "--on-limit", "pause", "--max-usd", "0.15",
                                      "run", "--", sys.executable, str(agent), timeout),
                            env=env, cwd=home, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def paused(home: Path) -> dict[str, object] | None:
    return next((r for r in runs_json(home) if r["status"] == "paused"), None)


@pytest.mark.parametrize("client_timeout", ["30", "1.5"])
def test_a_held_request_goes_on_after_a_raise_and_is_never_sent_if_its_client_left(
        home: Path, tmp_path: Path, client_timeout: str) -> None:
    agent = tmp_path / "agent.py"
    agent.write_text(AGENT)
    with FakeAnthropic(lambda req: reply(Text("ok"), usage=Usage(input_tokens=1000, output_tokens=4000))) as fake:
        p = start(home, fake, agent, client_timeout)
        try:
            run = wait_until(lambda: paused(home), 60, message="the run to pause at its ceiling")
            assert len(fake.requests) == 2                 # the third is held, not sent, not refused
            if client_timeout != "30":
                # the condition under test is elapsed time itself: the pause outlasts the frozen
                # client's timeout
                time.sleep(float(client_timeout) + 1.0)
            out = subprocess.run(guard_cmd("resume", str(run["id"]), "--raise-usd", "5"),
                                 env=guard_env(home), cwd=home, capture_output=True, text=True, timeout=60)
            assert out.returncode == 0, out.stderr
            stdout, stderr = p.communicate(timeout=120)
        finally:
            if p.poll() is None:
                p.kill()
        assert p.returncode == 0, stderr[-2000:]
        assert "agent done" in stdout
        answered = sum(1 for s in fake.served if s.completed)
        assert answered == 4                       # no request was answered twice or lost
        assert len(fake.requests) == 4             # a dropped held request never reached the server
    [done] = runs_json(home)
    assert done["status"] == "completed"
    bill = sum(s.usage.input_tokens + s.usage.output_tokens for s in fake.served if s.completed)
    assert done["usage"]["input_tokens"] + done["usage"]["output_tokens"] == bill
