"""Stop latency: from the keypress or command to guard's exit, for the real Claude Code and the
real aider against the fake servers, interactive (a PTY, pexpect) and headless.

  [s]top     the `s` key at the pause prompt (--on-limit pause) -> guard's exit
  guard stop `guard stop RUN` started while the agent works     -> guard's exit
  halt stop  --on-limit stop: the halt in the run's state file   -> guard's exit

Target (issue 11): <= 1 s each, and guard exits 124. Prints the median and the worst of
BENCH_STOP_ROUNDS rounds (default 3) per case. There is no unguarded path to interleave with (a
plain agent has no ceiling to stop at): the figure is absolute, so the load is printed with it.
Every wait has a deadline; a round that misses one is reported, never waited on.

    python3 bench/stop_latency.py [claude|aider ...]
"""
from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from _common import REPO

from tests.helpers import wait_until

TARGET_S = 1.0
ROUNDS = int(os.environ.get("BENCH_STOP_ROUNDS", "3"))
GUARD = [sys.executable, "-m", "guard"]
PROMPT = "\u276f"   # Claude Code's input prompt


def running_id(home: Path, env: dict[str, str]) -> str | None:
    out = subprocess.run([*GUARD, "status", "--json"], env=env, capture_output=True, text=True, timeout=30,
                         check=False)
    runs = json.loads(out.stdout or "[]") if out.returncode == 0 else []
    return runs[0]["id"] if runs else None


def halt_at(home: Path) -> float | None:
    """When guard wrote the halt into the run's state file (the hooks' and status line's view)."""
    for p in (home / "runs").glob("*/state.json"):
        try:
            s = json.loads(p.read_text())
        except (OSError, ValueError):
            continue
        if s.get("halt"):
            return float(s["updated_at"])
    return None


def exit_of(alive: Callable[[], bool], timeout: float = 30) -> float:
    wait_until(lambda: not alive(), timeout, 0.005, "guard's exit")
    return time.time()


# -- the two agents' worlds (as tests/e2e sets them up) ------------------------------------------


@contextmanager
def claude_world() -> Iterator[Any]:
    sys.path.insert(0, str(REPO))
    from tests.e2e.claude_env import make_world
    from tests.e2e.test_claude_interactive import loop_on_request
    from tests.fakes.anthropic_server import FakeAnthropic

    with FakeAnthropic() as fake, tempfile.TemporaryDirectory(prefix="guard-bench-") as tmp:
        w = make_world(Path(tmp), fake)
        w.seed_config()
        fake.script = loop_on_request("BENCHLOOP")
        yield w


def claude_case(case: str, interactive: bool) -> float:
    import pexpect

    with claude_world() as w:
        env = w.env(GUARD_METER="auto", PYTHONPATH=str(REPO))   # this checkout's guard
        on_limit = "pause" if case == "[s]top" else "stop"
        limits = ["--max-steps", "3"] if case != "guard stop" else []
        head = [*GUARD, *limits, "--on-limit", on_limit, "claude", "--allowedTools", "Bash"]
        if interactive:
            child = pexpect.spawn(head[0], head[1:], env=env, cwd=str(w.project), dimensions=(40, 140),
                                  encoding="utf-8", codec_errors="replace", timeout=60)
            seen = [""]

            def read(pattern: str, timeout: float = 60) -> None:
                def found() -> bool:
                    try:
                        seen[0] += child.read_nonblocking(1 << 20, timeout=0.05)
                    except (pexpect.TIMEOUT, pexpect.EOF):
                        pass
                    return pattern in seen[0]
                wait_until(found, timeout, 0, repr(pattern))
            try:
                read(PROMPT)
                child.send("LOOP BENCHLOOP please")
                time.sleep(0.3)   # the Enter on its own, not as part of a paste
                child.send("\r")
                return _finish(case, w.home, env, lambda: child.isalive(), lambda: child.send("s"),
                               lambda: read("aise the ceiling"), lambda: len(w.fake.served))
            finally:
                child.close(force=True)
        proc = subprocess.Popen([*head, "-p", "LOOP BENCHLOOP please"], env=env, cwd=w.project,
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            return _finish(case, w.home, env, lambda: proc.poll() is None, None, None, lambda: len(w.fake.served))
        finally:
            proc.kill()
            proc.wait()


@contextmanager
def aider_world() -> Iterator[Any]:
    sys.path.insert(0, str(REPO))
    from tests.e2e.test_aider_guard import World
    from tests.fakes.openai_server import FakeOpenAI, always_failing_edits
    from tests.tools import aider_bin

    with FakeOpenAI(always_failing_edits("hello.py")) as fake, \
            tempfile.TemporaryDirectory(prefix="guard-bench-") as tmp:
        root = Path(tmp)
        home, repo = root / "home", root / "repo"
        home.mkdir()
        repo.mkdir()
        git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
        subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
        (repo / "hello.py").write_text("print('hello')\n")
        (repo / ".gitignore").write_text(".aider*\n")
        subprocess.run(["git", "add", "."], cwd=repo, check=True)
        subprocess.run([*git, "commit", "-qm", "init"], cwd=repo, check=True)
        meta = root / "model-metadata.json"
        meta.write_text(json.dumps({"openai/fake-main": {
            "max_tokens": 4096, "max_input_tokens": 128000, "max_output_tokens": 4096,
            "input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6, "litellm_provider": "openai",
            "mode": "chat"}}))
        w = World(root, home, repo, root / "guard-home", meta, aider_bin())
        w.fake = fake
        yield w


def aider_case(case: str, interactive: bool) -> float:
    import pexpect

    with aider_world() as w:
        env = w.env(PYTHONPATH=str(REPO))   # this checkout's guard
        on_limit = "pause" if case == "[s]top" else "stop"
        limits = ["--max-steps", "3"] if case != "guard stop" else []
        head = [*GUARD, *limits, "--on-limit", on_limit, "aider", *w.aider_args(w.fake)]
        served = lambda: len(w.fake.requests)   # noqa: E731
        if interactive:
            child = pexpect.spawn(head[0], head[1:], env=env, cwd=str(w.repo), dimensions=(40, 120),
                                  encoding="utf-8", codec_errors="replace", timeout=90)
            try:
                child.expect(r"> ", timeout=90)
                child.sendline("fix hello.py please")
                return _finish(case, w.guard_home, env, lambda: child.isalive(), lambda: child.send("s"),
                               lambda: child.expect(r"\[r\]aise the ceiling", timeout=60), served)
            finally:
                child.close(force=True)
        messages = "".join(f"please fix hello.py, attempt {i}\n" for i in range(50))
        proc = subprocess.Popen([*head, "--no-pretty", "--no-fancy-input"], env=env, cwd=w.repo,
                                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        assert proc.stdin is not None
        proc.stdin.write(messages.encode())
        proc.stdin.flush()
        try:
            return _finish(case, w.guard_home, env, lambda: proc.poll() is None, None, None, served)
        finally:
            proc.kill()
            proc.wait()


def _finish(case: str, home: Path, env: dict[str, str], alive: Callable[[], bool],
            press_s: Callable[[], Any] | None, wait_prompt: Callable[[], Any] | None,
            served: Callable[[], int]) -> float:
    """Seconds from the stop (key, command, halt) to guard's exit."""
    if case == "[s]top":
        assert press_s is not None and wait_prompt is not None
        wait_prompt()
        t0 = time.time()
        press_s()
        return exit_of(alive) - t0
    if case == "guard stop":
        wait_until(lambda: served() >= 2, 90, message="the agent at work")
        run_id = wait_until(lambda: running_id(home, env), 30, 0.1, "the run in the ledger")
        t0 = time.time()
        subprocess.run([*GUARD, "stop", run_id], env=env, capture_output=True, timeout=30, check=True)
        return exit_of(alive) - t0
    t0 = wait_until(lambda: halt_at(home), 120, 0.005, "the halt")
    return exit_of(alive) - t0


CASES = [(name, interactive) for interactive in (True, False) for name in ("[s]top", "guard stop", "halt stop")
         if interactive or name != "[s]top"]


def main() -> None:
    agents = sys.argv[1:] or ["claude", "aider"]
    unknown = [a for a in agents if a not in ("claude", "aider")]
    if unknown:
        sys.exit(f"usage: python3 bench/stop_latency.py [claude|aider ...] (not {unknown[0]!r})")
    print(f"{ROUNDS} rounds per case; median and worst; target <= {TARGET_S:.1f} s; load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    runners = {"claude": claude_case, "aider": aider_case}
    for agent in agents:
        if agent == "claude" and not (REPO / ".tools/claude").exists() and not os.environ.get("GUARD_TEST_CLAUDE"):
            print("claude: not installed (scripts/install-test-deps): skipped")
            continue
        if agent == "aider" and not (REPO / ".tools/aider-venv").exists() and not shutil.which("aider"):
            print("aider: not installed (scripts/install-test-deps): skipped")
            continue
        for case, interactive in CASES:
            got: list[float] = []
            misses: list[str] = []
            for _ in range(ROUNDS):
                try:
                    got.append(runners[agent](case, interactive))
                except (AssertionError, subprocess.SubprocessError, OSError) as e:
                    misses.append(str(e) or type(e).__name__)
                except Exception as e:  # noqa: BLE001 - pexpect's timeouts and EOFs: a missed round
                    misses.append(f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
            label = f"{agent} {'interactive' if interactive else 'headless'} {case}"
            if got:
                med, worst = statistics.median(got), max(got)
                verdict = "met" if med <= TARGET_S else "MISSED"
                print(f"{label:<36} median {med:6.2f} s   worst {worst:6.2f} s   (n={len(got)})   {verdict}")
            else:
                print(f"{label:<36} no round finished")
            for m in dict.fromkeys(misses):
                print(f"{'':<36} missed round: {m}")


if __name__ == "__main__":
    main()
