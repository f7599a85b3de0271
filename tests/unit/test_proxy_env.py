"""Where the proxy forwards to, and the environment that points each tool at it."""
from __future__ import annotations

from pathlib import Path

import pytest

from guard.proxy.env import aider_upstream_env, client_env, parse_list, upstream_url
from guard.proxy.gate import OpenGate
from guard.proxy.server import ProxyCore, Upstream, _no_retry_words

BASE = "http://127.0.0.1:5555/SECRET"


def test_upstreams_follow_each_tools_precedence() -> None:
    env = {"ANTHROPIC_BASE_URL": "https://a.example", "ANTHROPIC_API_BASE": "https://b.example",
           "OPENAI_API_BASE": "https://o-old.example/v1", "OPENAI_BASE_URL": "https://o.example/v1"}
    assert upstream_url("claude", "anthropic", env) == "https://a.example"
    assert upstream_url("aider", "anthropic", env) == "https://b.example"   # litellm reads API_BASE first
    assert upstream_url("aider", "openai", env) == "https://o.example/v1"   # litellm: BASE_URL wins
    assert upstream_url("run", "openai", {}) == "https://api.openai.com/v1"
    assert upstream_url("claude", "anthropic", {"ANTHROPIC_BASE_URL": " "}) == "https://api.anthropic.com"


def test_client_env_per_tool() -> None:
    assert client_env(BASE, "claude", {}) == {"ANTHROPIC_BASE_URL": f"{BASE}/claude/anthropic"}
    run = client_env(BASE, "run", {})
    assert run["OPENAI_BASE_URL"] == f"{BASE}/run/openai" and run["GUARD_PROXY_URL"] == f"{BASE}/run"
    with pytest.raises(ValueError):
        client_env(BASE, "vim", {})


def test_aider_env_wins_over_dotenv_through_set_env_and_keeps_users_settings() -> None:
    env = client_env(BASE, "aider", {"AIDER_SET_ENV": "[FOO=1, OPENAI_BASE_URL=http://elsewhere]"})
    items = parse_list(env["AIDER_SET_ENV"])
    assert "FOO=1" in items
    assert "OPENAI_BASE_URL=http://elsewhere" not in items
    assert f"OPENAI_BASE_URL={BASE}/aider/openai" in items
    assert f"ANTHROPIC_API_BASE={BASE}/aider/anthropic" in items
    assert env["OPENAI_API_BASE"] == f"{BASE}/aider/openai"


def test_aider_upstream_env_reads_dotenv_and_argv(tmp_path: Path) -> None:
    (tmp_path / ".git").mkdir()
    sub = tmp_path / "pkg"
    sub.mkdir()
    (tmp_path / ".env").write_text("export OPENAI_API_BASE='https://gw.example/v1'  \n# c\nX=1 # note\n")
    env = aider_upstream_env({"HOME": str(tmp_path / "home")}, sub)
    assert env["OPENAI_API_BASE"] == "https://gw.example/v1" and env["X"] == "1"
    assert upstream_url("aider", "openai", env) == "https://gw.example/v1"
    env = aider_upstream_env({"HOME": str(tmp_path)}, sub, ["--openai-api-base", "https://cli.example/v1"])
    assert env["OPENAI_API_BASE"] == "https://cli.example/v1"


def core() -> ProxyCore:
    return ProxyCore(sink=None, gate=OpenGate(), pricer=None, env={}, secret="s3cr3t")


@pytest.mark.parametrize("path,expected", [
    ("/s3cr3t/claude/anthropic/v1/messages?beta=true", ("claude", "anthropic", "/v1/messages?beta=true")),
    ("/s3cr3t/aider/openai/chat/completions", ("aider", "openai", "/chat/completions")),
    ("/s3cr3t/anthropic/v1/messages", ("run", "anthropic", "/v1/messages")),
    ("/s3cr3t/v1/messages", ("run", "anthropic", "/v1/messages")),
    ("/s3cr3t/chat/completions", ("run", "openai", "/chat/completions")),
    ("/s3cr3t", ("run", "openai", "/")),
])
def test_routes(path: str, expected: tuple[str, str, str]) -> None:
    r = core().route(path)
    assert r is not None and (r.tool, r.provider, r.path) == expected


@pytest.mark.parametrize("path", ["/", "/v1/messages", "/s3cr3", "/s3cr3tX/v1/messages", "/S3CR3T/v1/messages"])
def test_routes_without_the_secret_are_refused(path: str) -> None:
    assert core().route(path) is None


def test_upstream_parse_keeps_base_path() -> None:
    up = Upstream.parse("https://gw.example:8443/openai/v1/")
    assert (up.host, up.port, up.base_path, up.host_header) == ("gw.example", 8443, "/openai/v1", "gw.example:8443")
    with pytest.raises(ValueError):
        Upstream.parse("api.openai.com")


def test_refusal_wording_avoids_litellm_retry_triggers() -> None:
    msg = _no_retry_words("$0.50 ceiling reached ($0.429 spent) rate limit")
    assert "rate limit" not in msg.lower()
    import re
    assert not re.search(r"\b429\b", msg)
