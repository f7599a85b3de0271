"""The README is a contract: every shell block in it runs, and what it shows is what happens.

Commands run in README order, in one world: a git project holding the README's example files,
a private GUARD_HOME and HOME, the pinned `claude` and `aider` on PATH under their plain names,
`guard` itself on PATH, and the fake Anthropic APIs (Messages and Admin) behind the variables a
real user would set. Each command gets a one-line prompt on stdin, so an interactive agent
(`guard claude`, `guard aider`) answers it and ends. Conventions: tests/readme_blocks.py.
"""
from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pytest

from tests.e2e.claude_env import API_KEY, make_world
from tests.fakes.anthropic_admin import CostEntry, FakeAdminAPI
from tests.fakes.anthropic_server import FakeAnthropic
from tests.readme_blocks import Block, shell_blocks
from tests.tools import REPO, aider_bin, claude_bin

README = REPO / "README.md"
COMMAND_TIMEOUT = 240
PROMPT = "Say hello.\n"

MY_AGENT = """#!/usr/bin/env python3
# the README's `./my-agent --repo .`: one model call, reported through the usage-file protocol
import json, os, sys
with open(os.environ["GUARD_USAGE_FILE"], "a") as f:
    f.write(json.dumps({"model": "claude-sonnet-4-6", "input_tokens": 1200, "output_tokens": 310}) + "\\n")
print("my-agent: done with", " ".join(sys.argv[1:]))
"""


@dataclass
class World:
    env: dict[str, str]
    project: Path


def _write(path: Path, text: str, executable: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    if executable:
        path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


def _git(project: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=project, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("readme")
    today = date.today()
    admin = FakeAdminAPI(key="sk-ant-admin...", costs=[CostEntry(today.replace(day=1), "tester@example.com", 0.0)])
    with FakeAnthropic() as fake, admin:
        w = make_world(root, fake)
        w.seed_config()
        bin_dir = root / "bin"
        _write(bin_dir / "guard", f'#!/bin/sh\nexec "{sys.executable}" -m guard "$@"\n', executable=True)
        os.symlink(claude_bin(), bin_dir / "claude")
        os.symlink(aider_bin(), bin_dir / "aider")
        project = w.project
        shutil.copytree(REPO / "examples", project / "examples")
        _write(project / "my-agent", MY_AGENT, executable=True)
        _write(project / "my_agent.py", MY_AGENT)
        _write(project / "src" / "app.py", "def app():\n    return 1\n")
        _write(project / "src" / "util.py", "def add(a, b):\n    return a + b\n")
        _git(project, "init", "-q")
        _git(project, "-c", "user.email=tester@example.com", "-c", "user.name=tester", "add", ".")
        _git(project, "-c", "user.email=tester@example.com", "-c", "user.name=tester",
             "commit", "-q", "-m", "start")
        env = w.env()
        env.pop("GUARD_METER", None)   # the README's commands run with guard's defaults
        env.update(
            HOME=str(root / "home"),
            PATH=os.pathsep.join([str(bin_dir), env["PATH"]]),
            PYTHONPATH=str(REPO),
            ANTHROPIC_ADMIN_BASE_URL=admin.url,
            AIDER_CHECK_UPDATE="false", AIDER_ANALYTICS="false", AIDER_GITIGNORE="false",
            AIDER_YES_ALWAYS="true",
        )
        (root / "home").mkdir()
        assert env["ANTHROPIC_API_KEY"] == API_KEY
        yield World(env, project)


def run_block(block: Block, w: World) -> list[str]:
    """Runs every command of the block; returns what went wrong, one line each."""
    failures: list[str] = []
    last_output = ""
    for cmd in block.commands:
        try:
            out = subprocess.run(["bash", "-c", cmd.text], cwd=w.project, env=w.env, capture_output=True,
                                 text=True, timeout=COMMAND_TIMEOUT, input=PROMPT)
        except subprocess.TimeoutExpired:
            failures.append(f"README.md:{cmd.line}: `{cmd.text}` did not end within {COMMAND_TIMEOUT}s")
            continue
        last_output = out.stdout + out.stderr
        if out.returncode != cmd.exit_code:
            tail = " | ".join(last_output.strip().splitlines()[-4:])
            failures.append(f"README.md:{cmd.line}: `{cmd.text}` exited {out.returncode}, "
                            f"the README says {cmd.exit_code}: {tail}")
    for line in block.expected_output:
        if line not in last_output:
            failures.append(f"README.md:{block.line}: the README shows {line!r}; the last command printed: "
                            f"{last_output.strip()[-600:]!r}")
    return failures


def test_every_shell_block_of_the_readme_runs_as_shown(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    blocks = shell_blocks(README)
    runnable = [b for b in blocks if not b.exempt]
    assert runnable, "the README has no runnable shell block"
    failures: list[str] = []
    for block in runnable:
        failures += run_block(block, world)
    summary = (f"README.md: {len(runnable)} shell blocks ran ({sum(len(b.commands) for b in runnable)} "
               f"commands), {len(blocks) - len(runnable)} exempt (no-run)")
    with capsys.disabled():
        print(f"\n{summary}")
    assert not failures, summary + "\n" + "\n".join(failures)
