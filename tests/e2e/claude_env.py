"""Running the real Claude Code against the fake Anthropic server, with and without guard."""
from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from guard.pricing import Pricer
from guard.usage import UsageEvent
from tests.fakes.anthropic_server import FakeAnthropic, Served
from tests.helpers import guard_cmd, guard_env
from tests.tools import claude_bin

API_KEY = "sk-ant-api03-guard-test-key-0123456789abcdefghijklmnop"
MODEL = "claude-sonnet-4-5"   # a model genai-prices knows, so the cost is checkable


@dataclass
class ClaudeWorld:
    root: Path
    home: Path       # GUARD_HOME
    config: Path     # CLAUDE_CONFIG_DIR
    project: Path    # the agent's cwd
    fake: FakeAnthropic
    claude: str

    def env(self, **extra: str) -> dict[str, str]:
        env = guard_env(
            self.home,
            # a HOME of the test's own: Claude Code's Bash tool sources the user's shell rc, where a
            # `pyenv init` (rehash, with a lock) killed mid-way by a halt would stall every later
            # test's shell for a minute
            HOME=str(self.root / "user-home"),
            ANTHROPIC_BASE_URL=self.fake.url,
            ANTHROPIC_API_KEY=API_KEY,
            CLAUDE_CONFIG_DIR=str(self.config),
            CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1",
            DISABLE_AUTOUPDATER="1",
            # these tests are about the adapter's own signals (transcripts, OTLP, hooks); a test
            # that wants guard's metering proxy in front passes GUARD_METER=auto or proxy
            GUARD_METER="native",
        )
        for k in ("CLAUDE_CODE_ENABLE_TELEMETRY", "OTEL_LOGS_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT",
                  "ANTHROPIC_AUTH_TOKEN", "CLAUDECODE", "CLAUDE_CODE_ENTRYPOINT"):
            env.pop(k, None)
        env["PATH"] = f"{Path(self.claude).parent}{os.pathsep}{env.get('PATH', '')}"
        env.update(extra)
        return env

    def guard(self, *args: str, timeout: float = 120, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(guard_cmd(*args), env=env or self.env(), cwd=self.project,
                              capture_output=True, text=True, timeout=timeout, check=False)

    def claude_direct(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run([self.claude, *args], env=self.env(), cwd=self.project,
                              capture_output=True, text=True, timeout=timeout, check=False)

    def runs(self) -> list[dict[str, Any]]:
        out = subprocess.run(guard_cmd("runs", "--json", "--limit", "100"), env=self.env(), cwd=self.project,
                             capture_output=True, text=True, timeout=60, check=False)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)  # type: ignore[no-any-return]

    def seed_config(self, api_key: str = API_KEY) -> None:
        """What an interactive first start asks about, answered in advance: onboarding done,
        the custom API key approved, this folder trusted."""
        data = {
            "hasCompletedOnboarding": True,
            "lastOnboardingVersion": "2.1.330",
            "numStartups": 5,
            "theme": "dark",
            "autoUpdates": False,
            "bypassPermissionsModeAccepted": True,
            "customApiKeyResponses": {"approved": [api_key[-20:]], "rejected": []},
            "projects": {str(self.project): {
                "hasTrustDialogAccepted": True, "hasCompletedProjectOnboarding": True,
                "projectOnboardingSeenCount": 1, "allowedTools": [],
            }},
        }
        self.config.mkdir(parents=True, exist_ok=True)
        (self.config / ".claude.json").write_text(json.dumps(data))


def make_world(tmp_path: Path, fake: FakeAnthropic) -> ClaudeWorld:
    w = ClaudeWorld(tmp_path, tmp_path / "guard-home", tmp_path / "claude-config", tmp_path / "project",
                    fake, claude_bin())
    for d in (w.home, w.config, w.project, w.root / "user-home"):
        d.mkdir(parents=True, exist_ok=True)
    return w


def truth_events(served: list[Served]) -> list[UsageEvent]:
    return [UsageEvent(key=f"req:{s.request_id}", source="truth", model=s.model,
                       input_tokens=s.usage.input_tokens, output_tokens=s.usage.output_tokens,
                       cache_write_tokens=s.usage.cache_write, cache_write_1h_tokens=s.usage.cache_write_1h,
                       cache_read_tokens=s.usage.cache_read, steps=len(s.tool_uses))
            for s in served if s.completed]


def truth_usage(served: list[Served]) -> dict[str, float]:
    evs = truth_events(served)
    pricer = Pricer()
    return {
        "input_tokens": sum(e.input_tokens for e in evs),
        "output_tokens": sum(e.output_tokens for e in evs),
        "cache_write_tokens": sum(e.cache_write_tokens for e in evs),
        "cache_read_tokens": sum(e.cache_read_tokens for e in evs),
        "steps": sum(e.steps for e in evs),
        "cost_usd": sum(pricer.price(e).usd for e in evs),
    }
