"""The words of the command line: help, hints, formats, exit codes, and reading without writing."""
from __future__ import annotations

import csv
import io
import json
import os
import stat
from pathlib import Path

import pytest

from tests.helpers import guard_env, run_guard, runs_json

pytestmark = pytest.mark.e2e


def test_bare_guard_prints_the_help_and_exits_0(tmp_path: Path) -> None:
    out = run_guard(tmp_path, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "Usage: guard" in out.stdout and "run -- CMD" in out.stdout
    assert "Run run under" not in out.stdout and "error" not in out.stderr


def test_run_help_is_guards_help_for_run(tmp_path: Path) -> None:
    out = run_guard(tmp_path, "run", "--help")
    assert out.returncode == 0, out.stderr
    assert "GUARD_USAGE_FILE" in out.stdout and "guard [OPTIONS] run -- CMD" in out.stdout


def test_help_tool_explains_guards_side(tmp_path: Path) -> None:
    out = run_guard(tmp_path, "help", "claude")
    assert out.returncode == 0 and "--settings" in out.stdout and "transcripts" in out.stdout
    out = run_guard(tmp_path, "help", "nothing-like-it")
    assert out.returncode == 2 and out.stderr.count("\n") == 1


def test_guard_option_after_run_gets_the_right_form(tmp_path: Path) -> None:
    out = run_guard(tmp_path, "run", "--max-usd", "1", "--", "true")
    assert out.returncode == 2
    assert out.stderr.strip() == ("guard: error: --max-usd is guard's option: it goes before the tool, "
                                  "as in: guard --max-usd 1 run -- true")
    assert not (tmp_path / "ledger.db").exists()


def test_a_program_without_run_gets_the_right_form(tmp_path: Path) -> None:
    out = run_guard(tmp_path, "--max-usd", "1", "python3", "x.py")
    assert out.returncode == 2
    assert "guard --max-usd 1 run -- python3 x.py" in out.stderr and out.stderr.count("\n") == 1


def test_relative_agent_path_keeps_its_dot_slash(tmp_path: Path) -> None:
    agent = tmp_path / "my-agent"
    agent.write_text("#!/bin/sh\necho relative-ok\n")
    agent.chmod(agent.stat().st_mode | stat.S_IXUSR)
    out = run_guard(tmp_path, "run", "--", "./my-agent", "--repo", ".", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "relative-ok" in out.stdout


def test_read_only_commands_never_create_the_ledger(tmp_path: Path) -> None:
    for args in (("runs",), ("runs", "--json"), ("runs", "--csv"), ("status",), ("status", "--json"),
                 ("report",), ("policy", "show"), ("doctor",), ("doctor", "--json")):
        out = run_guard(tmp_path, *args)
        assert out.returncode in (0, 1), (args, out.stderr)
        assert not (tmp_path / "ledger.db").exists(), args
    assert json.loads(run_guard(tmp_path, "runs", "--json").stdout) == []
    out = run_guard(tmp_path, "show", "abc123")
    assert out.returncode == 2 and not (tmp_path / "ledger.db").exists()


def test_invalid_filters_exit_2_with_one_line(tmp_path: Path) -> None:
    for args in (("runs", "--status", "bogus"), ("report", "--since", "2026-11-21", "--until", "2026-11-01")):
        out = run_guard(tmp_path, *args)
        assert out.returncode == 2, (args, out.stdout, out.stderr)
        assert out.stderr.count("\n") == 1 and out.stderr.startswith("guard: error:"), out.stderr


def test_pipes_get_full_ids_and_csv_keeps_raw_numbers(tmp_path: Path) -> None:
    usage = '{"model": "claude-sonnet-4-6", "input_tokens": 207000, "output_tokens": 1200}'
    out = run_guard(tmp_path, "run", "--", "sh", "-c", f"echo '{usage}' >> \"$GUARD_USAGE_FILE\"")
    assert out.returncode == 0, out.stderr
    run = runs_json(tmp_path)[0]
    table = run_guard(tmp_path, "runs")
    assert run["id"] in table.stdout and "…" not in table.stdout
    assert "208k" in table.stdout   # 207,000 + 1,200 tokens, read by a person
    rows = list(csv.DictReader(io.StringIO(run_guard(tmp_path, "runs", "--csv").stdout)))
    assert rows[0]["id"] == run["id"] and rows[0]["usage.input_tokens"] == "207000"
    assert float(rows[0]["usage.cost_usd"]) == pytest.approx(run["usage"]["cost_usd"])
    shown = run_guard(tmp_path, "show", run["id"])
    assert "1 step" in shown.stdout and "1 steps" not in shown.stdout
    for command in ("show", "status"):
        args = (command, run["id"], "--csv") if command == "show" else (command, "--csv")
        assert run_guard(tmp_path, *args).returncode == 0


def test_passthrough_records_nothing(tmp_path: Path) -> None:
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    tool = fake_bin / "claude"
    tool.write_text("#!/bin/sh\necho \"fake claude $*\"\n")
    tool.chmod(tool.stat().st_mode | stat.S_IXUSR)
    env = guard_env(tmp_path, PATH=f"{fake_bin}{os.pathsep}{os.environ['PATH']}")
    for args in (("claude", "--version"), ("claude", "mcp", "list"), ("--max-usd", "1", "claude", "--help")):
        out = run_guard(tmp_path, *args, env=env)
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == f"fake claude {' '.join(args[args.index('claude') + 1:])}"
    assert not (tmp_path / "ledger.db").exists()
    assert not (tmp_path / "runs").exists()
