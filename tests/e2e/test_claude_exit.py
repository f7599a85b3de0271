"""What interactive Claude Code leaves on the screen when it ends under guard."""
from __future__ import annotations

import re
import time

import pexpect

from tests.e2e.claude_env import ClaudeWorld
from tests.e2e.test_claude_interactive import spawn_guard, type_line, world  # noqa: F401 (fixture)
from tests.fakes.anthropic_server import text_answer


def test_exit_hint_resumes_without_guards_settings_and_no_traceback(world: ClaudeWorld) -> None:  # noqa: F811
    world.fake.script = text_answer("GREETINGS-FROM-FAKE")
    child, screen = spawn_guard(world, "--max-usd", "5")
    try:
        screen.wait_for(r"guard\s*\$0\.00/\$5\.00", timeout=90)
        type_line(child, "hello")
        screen.wait_for(r"GREETINGS-FROM-FAKE", timeout=90)
        # /exit typed while the turn winds down is queued, not run: ask until it ends
        deadline = time.monotonic() + 90
        while True:
            type_line(child, "/exit")
            try:
                child.expect(pexpect.EOF, timeout=5)
                break
            except pexpect.TIMEOUT:
                screen.raw += child.before or ""
                assert time.monotonic() < deadline, screen.text[-2000:]
        screen.raw += child.before or ""
    finally:
        child.close(force=True)
    text = screen.text
    hint = re.search(r"Resume this session with:\s*(claude[^\r\n]*)", text)
    assert hint, text[-2000:]
    assert re.match(r"claude\s+--resume\s+[0-9a-f-]{36}", hint.group(1)), hint.group(1)
    assert "--settings" not in hint.group(1) and "claude-settings" not in text
    assert "Traceback" not in text
