"""Interactive Claude Code under guard, driven through a real PTY (pexpect)."""
from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pexpect
import pytest

from tests.e2e.claude_env import MODEL, ClaudeWorld, make_world
from tests.fakes.anthropic_server import (
    FakeAnthropic,
    Reply,
    Request,
    Text,
    ToolUse,
    reply,
)
from tests.helpers import guard_cmd, pids_alive, wait_until

pytestmark = pytest.mark.e2e

ANSI = re.compile(r"\x1b\[[0-9;?<>=]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(\x07|\x1b\\)|\x1b[()][0-9A-Za-z]|\x1b[=>78]")


class Screen:
    """Everything the PTY printed, with escape sequences stripped, read as it comes."""

    def __init__(self, child: pexpect.spawn) -> None:
        self.child = child
        self.raw = ""

    def pump(self, seconds: float = 0.1) -> None:
        try:
            self.raw += self.child.read_nonblocking(1 << 20, timeout=seconds)
        except (pexpect.TIMEOUT, pexpect.EOF):
            pass

    @property
    def text(self) -> str:
        return ANSI.sub("", self.raw)

    def wait_for(self, pattern: str, timeout: float = 30, since: int = 0) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        rx = re.compile(pattern)
        while True:
            m = rx.search(self.text, since)
            if m:
                return m
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {pattern!r}; screen tail:\n{self.text[-2000:]}")
            self.pump(0.1)


def loop_on_request(tag: str, command: str = "echo"):  # type: ignore[no-untyped-def]
    """The model runs Bash forever once asked to LOOP; anything else gets a short answer."""
    def script(req: Request) -> Reply:
        if req.is_agent_loop and "LOOP" in req.user_text:
            return reply(Text("again"), ToolUse("Bash", {"command": f"{command} {tag} {req.n}", "description": "loop"}))
        return reply(Text(f"ANSWER-{req.n}"))
    return script


@pytest.fixture
def world(tmp_path: Path) -> Iterator[ClaudeWorld]:
    with FakeAnthropic() as fake:
        w = make_world(tmp_path, fake)
        w.seed_config()
        yield w


def spawn_guard(world: ClaudeWorld, *guard_args: str) -> tuple[pexpect.spawn, Screen]:
    argv = guard_cmd(*guard_args, "claude", "--model", MODEL, "--allowedTools", "Bash")
    child = pexpect.spawn(argv[0], argv[1:], env=world.env(), cwd=str(world.project),
                          dimensions=(40, 140), encoding="utf-8", codec_errors="replace", timeout=30)
    return child, Screen(child)


def type_line(child: pexpect.spawn, text: str) -> None:
    child.send(text)
    time.sleep(0.3)   # the input box takes a paste as one chunk; the Enter must come on its own
    child.send("\r")


def test_status_line_pause_raise_continue_then_stop(world: ClaudeWorld, tag: str) -> None:
    world.fake.script = loop_on_request(tag)
    (world.config / "settings.json").write_text(
        '{"statusLine": {"type": "command", "command": "echo USER-LINE"}}')
    child, screen = spawn_guard(world, "--max-usd", "0.02", "--on-limit", "pause")
    try:
        # Claude Code's own status bar shows guard's budget, composed with the user's status line
        screen.wait_for(r"guard\s*\$0\.00/\$0\.02", timeout=60)
        screen.wait_for(r"USER-LINE")

        type_line(child, f"LOOP {tag}")
        m = screen.wait_for(r"guard: paused: .*\$0\.02 task ceiling", timeout=60)
        screen.wait_for(r"\[r\]aise the ceiling", since=m.start())
        paused_at = len(world.fake.served)
        time.sleep(1.0)
        assert len(world.fake.served) <= paused_at + 1  # frozen: at most the request already in flight

        child.send("r")
        m = screen.wait_for(r"raise by how much", since=m.start())
        type_line(child, "0.02")
        # the agent continues, spends up to the raised ceiling and pauses again
        m = screen.wait_for(r"guard: paused: .*\$0\.04 task ceiling", timeout=60, since=m.end())
        assert len(world.fake.served) > paused_at
        screen.wait_for(r"\[r\]aise the ceiling", since=m.start())
        child.send("s")
        child.expect(pexpect.EOF, timeout=60)
    finally:
        if child.isalive():
            child.terminate(force=True)
    child.close()
    assert child.exitstatus == 124
    [run] = world.runs()
    assert run["status"] == "halted" and run["halt"]["ceiling"] == "usd"
    assert run["usage"]["cost_usd"] >= 0.04
    wait_until(lambda: pids_alive(tag) == [], timeout=10, message="no agent process left")


def test_a_halted_session_refuses_new_prompts(world: ClaudeWorld, tag: str) -> None:
    """With --on-limit stop and a long grace, the hooks end the session gracefully: the tool call
    is denied with guard's reason."""
    # a tool that takes a second: guard's halt (~0.2 s after the response) is in place before the
    # PostToolUse hook runs, so the hooks, not signals, end the loop
    world.fake.script = loop_on_request(tag, "sleep 1; echo")
    env_grace = "30s"
    argv = guard_cmd("--max-steps", "2", "--on-limit", "stop", "claude", "--model", MODEL,
                     "--allowedTools", "Bash")
    # the OTLP copy of the crossing response arrives ~0.25 s after the halt: a second report of a
    # call already counted must not be taken for "still spending" and cut the graceful path short
    env = world.env(GUARD_GRACE=env_grace)
    child = pexpect.spawn(argv[0], argv[1:], env=env, cwd=str(world.project), dimensions=(40, 140),
                          encoding="utf-8", codec_errors="replace", timeout=30)
    screen = Screen(child)
    try:
        screen.wait_for(r"guard\s*0/2\s*steps", timeout=60)  # the status line (Claude Code may draw its spaces as cursor moves)
        type_line(child, f"LOOP {tag}")
        # the model is told why (the denied tool call carries guard's reason) and the loop ends
        m = screen.wait_for(r"guard\s*stopped\s*this\s*session", timeout=60)
        n = len(world.fake.served)
        assert n == 2 and child.isalive()
        type_line(child, "one more thing")
        screen.wait_for(r"guard\s*stopped\s*this\s*session", timeout=30, since=m.end())
        time.sleep(1.0)
        assert len(world.fake.served) == n  # the prompt was refused before any request
    finally:
        if child.isalive():
            child.terminate(force=True)
        child.close()
