"""The real aider (pinned aider-chat) under the real `guard` CLI, against a fake OpenAI server.

aider starts slowly (seconds): these tests are few, and each checks several things of one run.
Every run gets its own HOME (aider writes ~/.aider), git repo, GUARD_HOME and fake server, whose
URL is forced with --set-env so nothing in the environment or a .env can redirect aider.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from guard.ledger.scrub import scrub_argv
from tests.fakes.openai_server import (
    FakeOpenAI,
    Script,
    always_failing_edits,
    create_file,
    failing_edit,
    say,
)
from tests.helpers import (
    guard_cmd,
    guard_env,
    last_run,
    pids_alive,
    run_guard,
    wait_until,
)
from tests.tools import aider_bin

pytestmark = pytest.mark.e2e

MODEL = "openai/fake-main"
INPUT_PER_TOKEN = 1e-6
OUTPUT_PER_TOKEN = 2e-6


@dataclass
class World:
    root: Path
    home: Path           # aider's HOME
    repo: Path
    guard_home: Path
    meta: Path
    aider: str

    def env(self, **extra: str) -> dict[str, str]:
        env = guard_env(self.guard_home, HOME=str(self.home), OPENAI_API_KEY="sk-fake-key",
                        PATH=os.pathsep.join([str(Path(self.aider).parent), os.environ.get("PATH", "")]),
                        GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@example.com",
                        GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@example.com", **extra)
        # a developer's own settings must not leak in (and the test must not depend on them)
        for k in list(env):
            if k.startswith(("AIDER_", "OPENAI_", "ANTHROPIC_")) and k != "OPENAI_API_KEY":
                del env[k]
        env.pop("LINES", None)
        env["COLUMNS"] = "100"
        # these tests are about aider's own signals; tests/e2e/test_proxy_* cover the proxy
        env.setdefault("GUARD_METER", "native")
        return env

    def aider_args(self, fake: FakeOpenAI, *extra: str, stream: bool = False, commits: bool = False) -> list[str]:
        args = [
            "--model", MODEL, "--weak-model", "openai/fake-weak", "--edit-format", "diff",
            "--model-metadata-file", str(self.meta),
            # litellm prefers OPENAI_BASE_URL; --set-env is applied after any .env file
            "--set-env", f"OPENAI_BASE_URL={fake.url}", "--openai-api-base", fake.url,
            "--no-analytics", "--no-check-update", "--no-show-release-notes", "--no-show-model-warnings",
            "--yes-always", "--no-auto-lint", "hello.py",
        ]
        if not commits:
            args[-1:-1] = ["--no-auto-commits", "--no-dirty-commits"]
        if not stream:
            args.append("--no-stream")
        return args + list(extra)


@pytest.fixture()
def world(tmp_path: Path) -> World:
    aider = aider_bin()
    home = tmp_path / "home"
    home.mkdir()
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    (repo / "hello.py").write_text("print('hello')\n")
    (repo / ".gitignore").write_text(".aider*\n")
    subprocess.run(["git", "add", "."], cwd=repo, check=True)
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "init"],
                   cwd=repo, check=True)
    # a project .env that would send aider elsewhere: --set-env must win over it
    (repo / ".env").write_text("OPENAI_BASE_URL=http://127.0.0.1:9/wrong\nOPENAI_API_BASE=http://127.0.0.1:9/wrong\n")
    meta = tmp_path / "model-metadata.json"
    meta.write_text(json.dumps({MODEL: {
        "max_tokens": 4096, "max_input_tokens": 128000, "max_output_tokens": 4096,
        "input_cost_per_token": INPUT_PER_TOKEN, "output_cost_per_token": OUTPUT_PER_TOKEN,
        "litellm_provider": "openai", "mode": "chat"}}))
    return World(tmp_path, home, repo, tmp_path / "guard-home", meta, aider)


def aider_alive(world: World) -> list[int]:
    """aider processes of this test (their cwd or argv mention the test's directory)."""
    import psutil

    out = []
    for pid in pids_alive("aider"):
        try:
            p = psutil.Process(pid)
            if str(world.root) in " ".join(p.cmdline()) or p.cwd().startswith(str(world.root)):
                out.append(pid)
        except psutil.Error:
            continue
    return out


def show(world: World, run_id: str) -> dict[str, Any]:
    out = run_guard(world.guard_home, "show", run_id, "--json", env=world.env())
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def analytics_log(world: World, run_id: str) -> list[dict[str, Any]]:
    path = world.guard_home / "runs" / run_id / "aider-analytics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


MESSAGES = "".join(f"please fix hello.py, attempt {i}\n" for i in range(8))


# -- a runaway session, halted at each ceiling ----------------------------------------------------


@pytest.mark.parametrize("ceiling,option,reply", [
    ("steps", ["--max-steps", "3"], None),
    ("tokens", ["--max-tokens", "30k"], None),
    ("usd", ["--max-usd", "0.03"], None),
    ("time", ["--max-time", "12s"], 2.0),
])
def test_runaway_session_halted_at_each_ceiling(world: World, ceiling: str, option: list[str],
                                               reply: float | None) -> None:
    """Several messages, each answered with an edit that does not apply, so aider retries by
    itself: guard stops it at the ceiling, records why, exits 124 and leaves no aider behind."""
    script: Script = always_failing_edits("hello.py", delay=reply) if reply else always_failing_edits("hello.py")
    # a step ceiling is held on the wire (the default meter): aider's own log comes too late for it.
    # Behind the proxy the upstream comes from aider's own settings (a --set-env of the base URL
    # would go around the proxy and is refused), so the project's .env points at the fake.
    env = world.env(GUARD_METER="auto") if ceiling == "steps" else world.env()
    with FakeOpenAI(script) as fake:
        args = world.aider_args(fake, "--no-pretty", "--no-fancy-input")
        if ceiling == "steps":
            i = args.index("--set-env")
            del args[i:i + 2]
            (world.repo / ".env").write_text(f"OPENAI_BASE_URL={fake.url}\n")
        proc = subprocess.run(
            guard_cmd(*option, "aider", *args),
            cwd=world.repo, env=env, input=MESSAGES, capture_output=True, text=True, timeout=120,
            check=False)
        served = fake.usage_totals(main_only=True)
    assert proc.returncode == 124, proc.stderr[-2000:]
    run = last_run(world.guard_home, world.env())
    assert run["tool"] == "aider" and run["status"] == "halted"
    assert run["halt"]["ceiling"] == ceiling, run["halt"]
    assert "halted" in proc.stderr
    assert aider_alive(world) == []
    if ceiling != "time":
        # aider retried on its own: more calls than messages answered, and the run was cut short
        assert served["calls"] >= 2
        assert "SearchReplaceNoExactMatch" in proc.stdout
        assert run["usage"]["steps"] >= 3
    if ceiling == "steps":
        # nothing past the ceiling left guard, under any load; the ledger counts what the wire did
        assert served["calls"] == run["usage"]["steps"] == 3


# -- exact figures with --no-stream ---------------------------------------------------------------


def test_no_stream_ledger_equals_server_truth_and_aiders_cost(world: World) -> None:
    """The ledger's tokens are the fake server's main-model totals; its cost is aider's own
    total_cost (fixed prices from the model metadata file); the run is exact; ~/.aider untouched."""
    script = [failing_edit("hello.py", 1), say("Fixed, no more changes."),
              say("Second answer.")]
    with FakeOpenAI(script) as fake:
        proc = subprocess.run(
            guard_cmd("--max-usd", "5", "aider", *world.aider_args(fake, "--no-pretty", "--no-fancy-input")),
            cwd=world.repo, env=world.env(), input="first question\nsecond question\n",
            capture_output=True, text=True, timeout=120, check=False)
        truth = fake.usage_totals(main_only=True)
        side_calls = [s for s in fake.served if s.kind != "main"]
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert truth["calls"] == 3 and side_calls == []
    run = last_run(world.guard_home, world.env())
    assert run["status"] == "completed" and run["accuracy"] == "exact"
    usage = run["usage"]
    assert usage["input_tokens"] == truth["prompt_tokens"]
    assert usage["output_tokens"] == truth["output_tokens"]
    assert usage["steps"] == 3
    # aider's chat history agreed with its log, reply by reply
    assert "aider:mismatch" not in {n["key"] for n in show(world, run["id"])["notices"]}
    sends = [r for r in analytics_log(world, run["id"]) if r["event"] == "message_send"]
    assert len(sends) == 3
    assert usage["cost_usd"] == pytest.approx(sends[-1]["properties"]["total_cost"], abs=1e-6)
    assert usage["cost_usd"] == pytest.approx(
        truth["prompt_tokens"] * INPUT_PER_TOKEN + truth["output_tokens"] * OUTPUT_PER_TOKEN, abs=1e-6)
    # guard pointed aider's log at its run folder through the environment only: analytics stays
    # off and aider's settings in ~/.aider say nothing of guard
    # the command line as given, minus what the ledger never keeps (paths, prompts, other values)
    assert run["argv"] == scrub_argv(world.aider_args(fake, "--no-pretty", "--no-fancy-input"))
    assert "--model-metadata-file" in run["argv"] and str(world.meta) not in run["argv"]
    settings = json.loads((world.home / ".aider" / "analytics.json").read_text())
    assert not settings.get("permanently_disable") and not settings.get("asked_opt_in")
    for f in (world.home / ".aider").rglob("*"):
        if f.is_file() and f.suffix == ".json" and f.stat().st_size < 1 << 20:
            assert str(world.guard_home) not in f.read_text(errors="replace")


def test_streaming_run_is_marked_estimated(world: World) -> None:
    """Streaming: aider counts tokens itself; its commit-message call is not counted at all."""
    with FakeOpenAI([create_file("new.py", "print('new')\n")]) as fake:
        proc = subprocess.run(
            guard_cmd("aider", *world.aider_args(fake, "--no-pretty", "--no-fancy-input", "--message", "hi",
                                                  stream=True, commits=True)),
            cwd=world.repo, env=world.env(), capture_output=True, text=True, timeout=120, check=False)
        truth = fake.usage_totals(main_only=True)
        kinds = [s.kind for s in fake.served]
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert truth["calls"] == 1 and kinds == ["main", "commit"]
    assert (world.repo / "new.py").exists()
    run = last_run(world.guard_home, world.env())
    assert run["accuracy"] == "estimated"
    assert run["usage"]["steps"] == 1 and run["usage"]["input_tokens"] > 0
    # aider counted the tokens itself: not the server's figures
    assert run["usage"]["input_tokens"] != truth["prompt_tokens"]
    notices = {n["key"]: n["message"] for n in show(world, run["id"])["notices"]}
    assert "--meter proxy" in notices["aider:estimates"] and "--no-stream" in notices["aider:estimates"]
    assert "aider's own estimates" in proc.stderr


# -- interactive, through a PTY -------------------------------------------------------------------


def test_interactive_pause_raise_continue_then_stop(world: World) -> None:
    pexpect = pytest.importorskip("pexpect")
    with FakeOpenAI(always_failing_edits("hello.py")) as fake:
        child = pexpect.spawn(
            sys.executable, ["-m", "guard", "--max-steps", "2", "aider", *world.aider_args(fake)],
            cwd=str(world.repo), env=world.env(), dimensions=(40, 120), encoding="utf-8",
            codec_errors="replace", timeout=60)
        try:
            child.expect(r"> ", timeout=90)              # aider's prompt, after its slow start
            child.sendline("fix hello.py please")
            child.expect(r"\[r\]aise the ceiling", timeout=60)
            assert aider_alive(world), "aider must be paused, not gone"
            calls_at_pause = len(fake.requests)
            child.send("r")
            child.expect("raise by how much")
            child.send("2\r")
            # the reflections go on: 2 more steps, then the raised ceiling pauses it again
            child.expect(r"\[r\]aise the ceiling", timeout=60)
            assert len(fake.requests) > calls_at_pause
            child.send("s")
            child.expect(pexpect.EOF, timeout=30)
        finally:
            child.close(force=True)
    assert child.exitstatus == 124
    run = last_run(world.guard_home, world.env())
    assert run["status"] == "halted" and run["halt"]["ceiling"] == "steps"
    assert 4 <= run["usage"]["steps"] <= 5
    # the terminal copy of aider's reports (read through the PTY) agreed with its log
    assert "aider:mismatch" not in {n["key"] for n in show(world, run["id"])["notices"]}
    wait_until(lambda: aider_alive(world) == [], 10, message="aider gone")


def test_terminal_output_alone_meters_when_log_and_history_are_lost(world: World) -> None:
    """A project .env sends aider's analytics log, and an option its chat history, below a plain
    file: aider can write neither, and guard meters from what aider prints on the terminal (its
    PTY), one call per report, with aider's own cost."""
    pexpect = pytest.importorskip("pexpect")
    missing = world.root / "a-file"
    missing.write_text("not a folder\n")
    with (world.repo / ".env").open("a") as f:
        f.write(f"AIDER_ANALYTICS_LOG={missing}/analytics.jsonl\n")
    with FakeOpenAI([failing_edit("hello.py", 1), say("Done.")]) as fake:
        child = pexpect.spawn(
            sys.executable,
            ["-m", "guard", "aider", *world.aider_args(fake, "--chat-history-file", f"{missing}/h.md",
                                                       "--message", "fix it")],
            cwd=str(world.repo), env=world.env(), dimensions=(40, 60), encoding="utf-8",
            codec_errors="replace", timeout=90)
        child.expect(pexpect.EOF)
        child.close()
        truth = fake.usage_totals(main_only=True)
    assert child.exitstatus == 0
    assert missing.is_file()
    run = last_run(world.guard_home, world.env())
    assert truth["calls"] == 2
    assert run["usage"]["steps"] == 2
    # aider's printed figures: "12k sent" per call, so within its rounding of the truth
    assert abs(run["usage"]["input_tokens"] - truth["prompt_tokens"]) <= 2 * 500
    assert abs(run["usage"]["output_tokens"] - truth["output_tokens"]) == 0   # below 1000: exact
    assert run["usage"]["cost_usd"] == pytest.approx(0.02, abs=0.0051)       # "$0.01 message" twice
