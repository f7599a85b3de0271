"""How the adapter launches Claude Code: arguments, --settings merge, fences, telemetry env."""
from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path
from typing import Any

import pytest

from guard.adapters.base import LaunchContext, Remaining
from guard.adapters.claude_code import ClaudeCodeAdapter
from guard.adapters.claude_launch import (
    guard_settings,
    merge_settings,
    parse_args,
    user_statusline,
)


def fake_claude(d: Path, body: str = "#!/bin/sh\nexit 0\n") -> Path:
    d.mkdir(parents=True, exist_ok=True)
    p = d / "claude"
    p.write_text(body)
    p.chmod(p.stat().st_mode | stat.S_IXUSR)
    return p


@pytest.fixture
def ctx(tmp_path: Path) -> LaunchContext:
    bin_dir = tmp_path / "bin"
    fake_claude(bin_dir)
    home = tmp_path / "home"
    (home / ".claude").mkdir(parents=True)
    cwd = tmp_path / "proj"
    cwd.mkdir()
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    return LaunchContext(
        run_id="r1", tool_args=[], env={"PATH": str(bin_dir), "HOME": str(home)}, run_dir=run_dir,
        state_path=run_dir / "state.json", cwd=cwd, started_at=time.time(), interactive=False,
        remaining=Remaining(),
    )


def prepare(ctx: LaunchContext, args: list[str], **kw: Any) -> tuple[ClaudeCodeAdapter, list[str], dict[str, str]]:
    ctx.tool_args = args
    for k, v in kw.items():
        setattr(ctx, k, v)
    a = ClaudeCodeAdapter()
    launch = a.prepare(ctx)
    return a, launch.argv, launch.env


def after_exe(argv: list[str], flag: str) -> str | None:
    return argv[argv.index(flag) + 1] if flag in argv else None


def test_parse_args() -> None:
    a = parse_args(["-p", "hi", "--model", "sonnet", "--settings", "{}", "--resume", "abc"])
    assert a.print_mode and a.resume == "abc" and a.settings_value == "{}" and a.settings_index == 5
    assert parse_args(["-c"]).continue_ and parse_args(["-pc"]).print_mode
    assert parse_args(["--resume"]).resume == "" and parse_args(["-r"]).resume == ""
    assert parse_args(["--settings=/x.json"]).settings_value == "/x.json"
    assert parse_args(["mcp", "list"]).subcommand == "mcp"
    assert parse_args(["fix the mcp bug"]).subcommand is None
    # an option's value is not read as a flag or a subcommand
    assert parse_args(["--model", "-p"]).print_mode is False
    assert parse_args(["--append-system-prompt", "doctor"]).subcommand is None
    assert parse_args(["--", "-p"]).print_mode is False


def test_fresh_session_gets_a_fixed_session_id_and_guard_settings(ctx: LaunchContext) -> None:
    a, argv, env = prepare(ctx, ["-p", "hello world", "--model", "sonnet"])
    assert argv[0].endswith("/claude")
    assert argv[-4:] == ["-p", "hello world", "--model", "sonnet"]  # the user's args, verbatim, last
    sid = after_exe(argv, "--session-id")
    assert sid and a.session_id == sid
    settings = json.loads(Path(after_exe(argv, "--settings") or "").read_text())
    assert set(settings["hooks"]) == {"PreToolUse", "PostToolUse", "UserPromptSubmit", "SessionStart"}
    assert settings["hooks"]["PreToolUse"][0]["matcher"] == "*"
    assert str(ctx.state_path) in settings["statusLine"]["command"]
    assert env["CLAUDE_CODE_ENABLE_TELEMETRY"] == "1"
    assert env["OTEL_EXPORTER_OTLP_LOGS_ENDPOINT"].startswith("http://127.0.0.1:")
    a.close()


@pytest.mark.parametrize("args", [["--resume", "0ffeb810-68bb-4a12-9302-1e56b0894a0a"], ["-c"],
                                  ["--session-id", "0ffeb810-68bb-4a12-9302-1e56b0894a0a"], ["--continue"]])
def test_no_session_id_when_the_user_chose_the_session(ctx: LaunchContext, args: list[str]) -> None:
    a, argv, _ = prepare(ctx, args)
    assert argv.count("--session-id") == (1 if "--session-id" in args else 0)
    if "-c" not in args and "--continue" not in args:
        assert a.session_id == "0ffeb810-68bb-4a12-9302-1e56b0894a0a"
    a.close()


def test_users_settings_flag_is_merged_not_replaced(ctx: LaunchContext, tmp_path: Path) -> None:
    user = {"model": "opus", "hooks": {"PreToolUse": [{"matcher": "Bash", "hooks": [
        {"type": "command", "command": "echo mine"}]}]}, "statusLine": {"type": "command", "command": "echo S", "padding": 2}}
    a, argv, _ = prepare(ctx, ["--settings", json.dumps(user), "-p", "x"])
    assert argv.count("--settings") == 1  # Claude Code keeps only the last one: ours holds both
    merged = json.loads(Path(after_exe(argv, "--settings") or "").read_text())
    assert merged["model"] == "opus"
    pre = merged["hooks"]["PreToolUse"]
    assert pre[0]["hooks"][0]["command"] == "echo mine" and pre[1]["matcher"] == "*"
    assert merged["statusLine"]["command"].endswith("'echo S'") and merged["statusLine"]["padding"] == 2
    a.close()
    path = tmp_path / "s.json"
    path.write_text(json.dumps(user))
    a, argv, _ = prepare(ctx, [f"--settings={path}"])
    assert any(x.startswith("--settings=") and x.endswith("claude-settings.json") for x in argv)
    a.close()


def test_status_line_composes_with_the_users_own(ctx: LaunchContext) -> None:
    cfg = Path(ctx.env["HOME"]) / ".claude"
    (cfg / "settings.json").write_text(json.dumps({"statusLine": {"type": "command", "command": "user-line"}}))
    assert user_statusline(None, cfg, ctx.cwd) == {"type": "command", "command": "user-line"}
    (ctx.cwd / ".claude").mkdir()
    (ctx.cwd / ".claude" / "settings.json").write_text(json.dumps({"statusLine": {"type": "command", "command": "proj"}}))
    assert user_statusline(None, cfg, ctx.cwd)["command"] == "proj"  # project beats user
    assert user_statusline({"statusLine": {"command": "flag"}}, cfg, ctx.cwd)["command"] == "flag"
    ours = guard_settings(ctx.state_path, ctx.run_dir / "s.jsonl", user_statusline(None, cfg, ctx.cwd))
    assert ours["statusLine"]["command"].endswith(" proj")


def test_claude_config_dir_is_respected(ctx: LaunchContext, tmp_path: Path) -> None:
    cfg = tmp_path / "cfgdir"
    a, _, _ = prepare(ctx, ["-p", "x"], env={**ctx.env, "CLAUDE_CONFIG_DIR": str(cfg)})
    assert a.transcript_root is not None and a.transcript_root.parent == cfg / "projects"
    a.close()


def test_print_mode_fences(ctx: LaunchContext) -> None:
    a, argv, _ = prepare(ctx, ["-p", "x"], remaining=Remaining(usd=2.345678, steps=10, tokens=5000))
    assert after_exe(argv, "--max-budget-usd") == "2.3456"  # rounded down, never above the ceiling
    assert after_exe(argv, "--max-turns") == "11"
    assert "--task-budget" not in argv  # opt-in
    a.close()
    a, argv, _ = prepare(ctx, ["-p", "x", "--max-budget-usd", "1", "--max-turns", "3"],
                         remaining=Remaining(usd=2, steps=10))
    assert argv.count("--max-budget-usd") == 1 and after_exe(argv, "--max-budget-usd") == "1"
    assert argv.count("--max-turns") == 1
    a.close()
    a, argv, _ = prepare(ctx, ["hello"], remaining=Remaining(usd=2, steps=10))  # interactive: no -p flags
    assert "--max-budget-usd" not in argv and "--max-turns" not in argv
    a.close()


def test_task_budget_is_opt_in_with_the_api_minimum(ctx: LaunchContext) -> None:
    a, argv, _ = prepare(ctx, ["-p", "x"], remaining=Remaining(tokens=5000), options={"task_budget": True})
    assert after_exe(argv, "--task-budget") == "20000"
    a.close()
    a, argv, _ = prepare(ctx, ["-p", "x"], remaining=Remaining(tokens=150_000), options={"task_budget": True})
    assert after_exe(argv, "--task-budget") == "150000"
    a.close()


def test_users_own_telemetry_is_left_alone(ctx: LaunchContext) -> None:
    env = {**ctx.env, "CLAUDE_CODE_ENABLE_TELEMETRY": "1", "OTEL_LOGS_EXPORTER": "console"}
    a, _, out = prepare(ctx, ["-p", "x"], env=env)
    assert out["OTEL_LOGS_EXPORTER"] == "console" and "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT" not in out
    a.close()
    cfg = Path(ctx.env["HOME"]) / ".claude"
    (cfg / "settings.json").write_text(json.dumps({"env": {"CLAUDE_CODE_ENABLE_TELEMETRY": "1"}}))
    a, _, out = prepare(ctx, ["-p", "x"], env=dict(ctx.env))
    assert "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT" not in out
    a.close()


def test_subcommands_pass_through_untouched(ctx: LaunchContext) -> None:
    a, argv, _env = prepare(ctx, ["mcp", "list"])
    assert argv[1:] == ["mcp", "list"] and a.passive
    a, argv, _ = prepare(ctx, ["--version"])
    assert argv[1:] == ["--version"]


def test_guard_wrappers_are_skipped(ctx: LaunchContext, tmp_path: Path) -> None:
    wrappers = tmp_path / "wrappers"
    fake_claude(wrappers, "#!/bin/sh\n# guard-wrapper: do not edit\nexec guard claude \"$@\"\n")
    real = Path(ctx.env["PATH"]) / "claude"
    env = {**ctx.env, "PATH": f"{wrappers}{os.pathsep}{ctx.env['PATH']}"}
    a, argv, _ = prepare(ctx, ["-p", "x"], env=env)
    assert argv[0] == str(real)
    a.close()


def test_merge_settings_with_nothing() -> None:
    ours = guard_settings(Path("/s"), Path("/f"), None)
    assert merge_settings(None, ours) == ours


def test_resume_hint_names_a_launcher_not_guards_settings() -> None:
    from guard.adapters.claude_launch import RESUME_HINT_VAR, resume_hint_env

    assert resume_hint_env({}) == {RESUME_HINT_VAR: "claude"}
    assert resume_hint_env({RESUME_HINT_VAR: "myclaude"}) == {}   # the user's own choice stays
