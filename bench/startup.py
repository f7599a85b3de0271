"""Start-up cost of guard, interleaved with the direct path so both see the same machine load.

  1. `guard run -- true` against `true`
  2. `guard claude --version` against `claude --version` (passthrough: guard execs the tool)
  3. time to Claude Code's prompt under guard against plain, through a real PTY (pexpect),
     against the fake Anthropic server, with guard's default meter (auto: the metering proxy)

Targets (issue 11): overhead <= 150 ms, passthrough <= 100 ms over plain, prompt <= 1.2x plain.
The first guarded start of the day in a GUARD_HOME fills its price store (guard.price_store);
one untimed start does that here, as the day's earlier runs would have.

Prints medians and the overhead (ms) or the ratio. Bytecode is compiled once first, as an
installed guard has it. Never hangs: every child has a deadline.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import REPO, bench_env

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "15"))
PROMPT_ROUNDS = int(os.environ.get("BENCH_PROMPT_ROUNDS", "6"))
PROMPT = "\u276f"   # Claude Code's input prompt, drawn once it takes keys (its hint line varies by version)
TARGETS = {"run": 0.150, "passthrough": 0.100, "prompt": 1.2}
GUARD = [sys.executable, "-m", "guard"]


def timed(argv: list[str], env: dict[str, str], cwd: str | None = None) -> float:
    t = time.perf_counter()
    subprocess.run(argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   stdin=subprocess.DEVNULL, timeout=60, check=False)
    return time.perf_counter() - t


def interleaved(a: list[str], b: list[str], env: dict[str, str], rounds: int) -> tuple[list[float], list[float]]:
    ta, tb = [], []
    for _ in range(rounds):
        ta.append(timed(a, env))
        tb.append(timed(b, env))
    return ta, tb


def report(label: str, under: list[float], plain: list[float], target: str = "") -> None:
    g, p = statistics.median(under), statistics.median(plain)
    verdict = ""
    if target == "prompt":
        verdict = f"   target <= {TARGETS[target]:.1f}x: {'met' if g / p <= TARGETS[target] else 'MISSED'}"
    elif target:
        verdict = (f"   target <= {TARGETS[target] * 1000:.0f} ms: "
                   f"{'met' if g - p <= TARGETS[target] else 'MISSED'}")
    print(f"{label:<40} guard {g * 1000:7.1f} ms   plain {p * 1000:7.1f} ms   "
          f"overhead {(g - p) * 1000:6.1f} ms   ratio {g / p:5.2f}x{verdict}")


def claude_path() -> str | None:
    cand = os.environ.get("GUARD_TEST_CLAUDE") or str(REPO / ".tools/claude/node_modules/.bin/claude")
    return cand if Path(cand).exists() else None


def time_to_prompt(argv: list[str], env: dict[str, str], cwd: str) -> float | None:
    """Spawn on a PTY; seconds until Claude Code draws its input prompt."""
    import pexpect

    t = time.perf_counter()
    child = pexpect.spawn(argv[0], argv[1:], env=env, cwd=cwd, dimensions=(40, 140), encoding="utf-8",
                          codec_errors="replace", timeout=30)
    try:
        child.expect_exact(PROMPT, timeout=30)
        return time.perf_counter() - t
    except (pexpect.TIMEOUT, pexpect.EOF):
        return None
    finally:
        child.terminate(force=True)
        child.close(force=True)


def prompt_bench(claude: str) -> None:
    sys.path.insert(0, str(REPO))
    from tests.e2e.claude_env import make_world
    from tests.fakes.anthropic_server import FakeAnthropic

    with FakeAnthropic() as fake, tempfile.TemporaryDirectory(prefix="guard-bench-") as tmp:
        world = make_world(Path(tmp), fake)
        world.seed_config()
        env = world.env(GUARD_METER="auto")
        time_to_prompt([*GUARD, "claude"], env, str(world.project))   # fills the price store; untimed
        under, plain = [], []
        for _ in range(PROMPT_ROUNDS):
            g = time_to_prompt([*GUARD, "claude"], env, str(world.project))
            p = time_to_prompt([claude], env, str(world.project))
            if g is not None and p is not None:
                under.append(g)
                plain.append(p)
        if not under:
            print("time to Claude Code's prompt: the prompt never appeared (skipped)")
            return
        report(f"time to Claude Code's prompt (n={len(under)})", under, plain, "prompt")


def main() -> None:
    env = bench_env()
    env["PYTHONPATH"] = str(REPO)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO / "guard")], check=False,
                   stdout=subprocess.DEVNULL)
    timed([*GUARD, "run", "--", "true"], env)   # warm the page cache and create the ledger
    print(f"{ROUNDS} interleaved rounds each; medians; load average {os.getloadavg()[0]:.1f} on "
          f"{os.cpu_count()} cores")
    report("guard run -- true  vs  true", *interleaved([*GUARD, "run", "--", "true"], ["true"], env, ROUNDS), "run")
    claude = claude_path()
    if claude is None:
        print("Claude Code not installed (scripts/install-test-deps): passthrough and prompt skipped")
        return
    env["PATH"] = f"{Path(claude).parent}{os.pathsep}{env['PATH']}"
    report("guard claude --version  vs  claude --version",
           *interleaved([*GUARD, "claude", "--version"], [claude, "--version"], env, ROUNDS), "passthrough")
    listed = subprocess.run([*GUARD, "runs", "--json", "--limit", "1000"], env=env, capture_output=True, text=True,
                            timeout=60, check=False)
    recorded = sum(r["tool"] == "claude" for r in json.loads(listed.stdout or "[]"))
    print(f"passthrough runs recorded: {recorded} (target 0: {'met' if recorded == 0 else 'MISSED'})")
    report("python3 -c pass (interpreter floor)", *interleaved([sys.executable, "-c", "pass"], ["true"], env, ROUNDS))
    prompt_bench(claude)


if __name__ == "__main__":
    main()
