"""Where aider will write its cost signals, read the way aider reads its settings."""
from __future__ import annotations

from pathlib import Path

import pytest

from guard.adapters.aider_settings import arg_flag, arg_value, parse_dotenv, resolve


@pytest.fixture()
def project(tmp_path: Path) -> tuple[Path, Path]:
    home = tmp_path / "home"
    home.mkdir()
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    sub = repo / "pkg"
    sub.mkdir()
    return home, sub


def test_defaults(project: tuple[Path, Path]) -> None:
    home, cwd = project
    s = resolve([], {}, cwd, home)
    assert s.git_root == cwd.parent
    assert s.chat_history == cwd.parent / ".aider.chat.history.md"   # the git root, not cwd
    assert s.analytics_log is None and s.stream and s.model is None


def test_no_repo_history_in_cwd(tmp_path: Path) -> None:
    s = resolve([], {}, tmp_path, tmp_path / "home")
    assert s.git_root is None and s.chat_history == tmp_path / ".aider.chat.history.md"


def test_arguments(project: tuple[Path, Path]) -> None:
    home, cwd = project
    s = resolve(["--model", "openai/gpt-4o", "--analytics-log=logs/a.jsonl", "--no-stream",
                 "--chat-history-file", "~/h.md", "--cache-keepalive-pings", "3", "--message", "hi"],
                {}, cwd, home)
    assert s.model == "openai/gpt-4o"
    assert s.analytics_log == cwd / "logs/a.jsonl" and s.analytics_log_origin == "argument"
    assert s.chat_history == home / "h.md"
    assert not s.stream and s.keepalive_pings == 3


def test_dotenv_beats_environment_beats_config(project: tuple[Path, Path]) -> None:
    home, cwd = project
    (cwd.parent / ".aider.conf.yml").write_text("analytics-log: conf.jsonl\nstream: false\n"
                                                "chat-history-file: conf.md\n")
    s = resolve([], {}, cwd, home)
    assert s.analytics_log == cwd / "conf.jsonl" and s.analytics_log_origin == "config"
    assert s.chat_history == cwd / "conf.md" and not s.stream
    s = resolve([], {"AIDER_ANALYTICS_LOG": "/env.jsonl", "AIDER_STREAM": "true"}, cwd, home)
    assert s.analytics_log == Path("/env.jsonl") and s.analytics_log_origin == "environment"
    assert s.stream
    (cwd.parent / ".env").write_text('export AIDER_ANALYTICS_LOG="dot.jsonl"  # mine\nAIDER_STREAM=false\n')
    s = resolve([], {"AIDER_ANALYTICS_LOG": "/env.jsonl", "AIDER_STREAM": "true"}, cwd, home)
    assert s.analytics_log == cwd / "dot.jsonl" and s.analytics_log_origin == ".env"
    assert not s.stream
    s = resolve(["--stream"], {}, cwd, home)
    assert s.stream


def test_cwd_config_wins_over_home(project: tuple[Path, Path]) -> None:
    home, cwd = project
    (home / ".aider.conf.yml").write_text("model: home-model\n")
    (cwd / ".aider.conf.yml").write_text("model: cwd-model\n")
    assert resolve([], {}, cwd, home).model == "cwd-model"
    assert resolve([], {"AIDER_MODEL": "env-model"}, cwd, home).model == "env-model"


def test_arg_helpers() -> None:
    args = ["--model", "a", "--model=b", "--stream", "--no-stream", "--", "--model", "c"]
    assert arg_value(args, "--model") == "b"
    assert arg_flag(args, "stream") is False
    assert arg_flag([], "stream") is None
    assert arg_value(["--model"], "--model") is None


def test_parse_dotenv() -> None:
    assert parse_dotenv("A=1\n# c\nexport B='two words'\nC=x # note\nbad line\nD=\"q\"\n") == {
        "A": "1", "B": "two words", "C": "x", "D": "q"}
