"""The proxy's secret never reaches an argv, even when aider's own --set-env forces guard to
say something on aider's command line."""
from __future__ import annotations

import stat
import subprocess
from pathlib import Path

import pytest

from guard.errors import UsageError
from guard.proxy import OpenGate, start_proxy
from guard.proxy.env import aider_upstream_env
from tests.e2e.test_proxy_agents import AIDER_ARGS, PRICER, clean_env, init_repo
from tests.fakes import openai_server as fo
from tests.fakes.proxy_upstreams import RecordingSink
from tests.tools import aider_bin

pytestmark = pytest.mark.e2e


def test_aider_with_its_own_set_env_goes_through_the_proxy_and_no_argv_holds_the_secret(tmp_path: Path):
    repo = tmp_path / "repo"
    init_repo(repo)
    sink = RecordingSink()
    with fo.FakeOpenAI([fo.create_file("hello.py", "print('hi')\n")]) as fake:
        # a project .env pointing straight at the upstream: only guard's env file may win over it
        (repo / ".env").write_text(f"OPENAI_BASE_URL={fake.url}\nOPENAI_API_BASE={fake.url}\n")
        env = clean_env(tmp_path) | {"OPENAI_API_KEY": "sk-dummy"}
        user_args = [*AIDER_ARGS, "--set-env", "GUARD_TEST_MARK=1", "--message", "create hello.py"]
        proxy = start_proxy(sink, OpenGate(), PRICER, aider_upstream_env(env, repo, user_args))
        try:
            extra = proxy.client_args("aider", user_args)
            secret = proxy.url.rsplit("/", 1)[1]
            assert extra[0] == "--env-file" and not any(secret in a for a in extra)
            env_file = Path(extra[1])
            assert stat.S_IMODE(env_file.stat().st_mode) == 0o600 and secret in env_file.read_text()
            out = subprocess.run([aider_bin(), *user_args, *extra], env=env | proxy.client_env("aider"),
                                 cwd=repo, capture_output=True, text=True, timeout=180)
        finally:
            proxy.stop()
    assert out.returncode == 0, out.stdout[-2000:]
    assert fake.completed() and len(sink.events) == len(fake.completed())
    assert not env_file.exists()  # removed with the proxy


def test_a_set_env_that_would_bypass_the_proxy_is_refused(tmp_path: Path):
    proxy = start_proxy(RecordingSink(), OpenGate(), PRICER, {})
    try:
        with pytest.raises(UsageError, match="OPENAI_BASE_URL"):
            proxy.client_args("aider", ["--set-env", "OPENAI_BASE_URL=http://elsewhere"])
        assert proxy.client_args("aider", ["--model", "x"]) == []
    finally:
        proxy.stop()
