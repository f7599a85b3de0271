"""Does a ceiling mean what it says? Real Claude Code and real aider in runaway loops against the
fake servers, on the default meter (the proxy in front), judged by the server's own bill.

For Claude Code at each USD ceiling, with the fake billing no prompt cache and billing one the way
Anthropic does (the prefix a previous request cached is read at a tenth of the input rate): the bill (never above the ceiling), what was left unused
(at most two of the run's median responses), the requests sent with a lowered output allowance,
and Claude Code's continuation requests after a cut answer, with their cost. For aider: a 3-step
ceiling, N runs, the most calls any run got served. Then the decision core's admission time, with
a shared developer ceiling reserved in a real SQLite ledger.

    python3 bench/ceilings.py [--usd 0.5,1,2,10] [--cache off,on] [--aider-runs 20] [--load]

--load keeps both cores busy with busy loops of the bench's own while it measures.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import REPO, bench_env, pct

from guard.governor import RunState, decide
from guard.governor.events import Admit, Budget, RequestCost, Settled
from guard.ledger.sqlite import SqliteLedger
from guard.pricing import Pricer
from guard.usage import UsageEvent
from tests.fakes.anthropic_server import FakeAnthropic, Request, Text, ToolUse, Usage, reply
from tests.fakes.openai_server import FakeOpenAI, always_failing_edits

CLAUDE = os.environ.get("GUARD_TEST_CLAUDE") or str(REPO / ".tools/claude/node_modules/.bin/claude")
AIDER = os.environ.get("GUARD_TEST_AIDER") or str(REPO / ".tools/aider-venv/bin/aider")
MODEL = "claude-sonnet-4-5"
CONTINUATION = "Output token limit hit"
PRICER = Pricer()


def busy_loops(n: int) -> list[subprocess.Popen[bytes]]:
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


# -- Claude Code ------------------------------------------------------------------------------


class Runaway:
    """Every turn a long answer (8,000 tokens of text) and one more Bash call. The input billed is
    what the request's size says at 4 bytes a token (real tokenizers: 3.5 to 4.5).

    `cache`: a request with cache breakpoints reads from the cache the longest prompt prefix an
    earlier request left there in the last 5 minutes and writes the rest (Anthropic's rule, on
    bytes: tools, system and messages in order, breakpoints left out)."""

    def __init__(self, cache: bool) -> None:
        self.cache = cache
        self.cached: list[tuple[str, float]] = []

    def usage(self, req: Request, output_tokens: int) -> Usage:
        size = len(json.dumps(req.body)) // 4
        if not self.cache or "cache_control" not in json.dumps(req.body):
            return Usage(input_tokens=size, output_tokens=output_tokens)
        prompt = json.dumps(_unmarked([req.body.get("tools"), req.body.get("system"), req.body.get("messages")]))
        now = time.monotonic()
        self.cached = [(p, t) for p, t in self.cached if now - t <= 300]
        hit = max((len(os.path.commonprefix([p, prompt])) for p, _ in self.cached), default=0)
        self.cached = [*self.cached[-7:], (prompt, now)]
        read = min(size, hit // 4)
        return Usage(input_tokens=0, output_tokens=output_tokens, cache_write_5m=size - read, cache_read=read)

    def __call__(self, req: Request):  # type: ignore[no-untyped-def]
        if "Bash" not in req.tool_names:
            return reply(Text("A title."), usage=self.usage(req, 20))
        return reply(Text("Working on it. " * 2000),
                     ToolUse("Bash", {"command": f"true {req.n}", "description": "loop"}), usage=self.usage(req, 8000))


def _unmarked(value: object) -> object:
    if isinstance(value, dict):
        return {k: _unmarked(v) for k, v in value.items() if k != "cache_control"}
    if isinstance(value, list):
        return [_unmarked(v) for v in value]
    return value


def claude_once(ceiling: float, cache: bool) -> dict[str, float]:
    root = Path(tempfile.mkdtemp(prefix="guard-ceilings-"))
    project, config = root / "project", root / "claude-config"
    project.mkdir()
    config.mkdir()
    with FakeAnthropic(Runaway(cache)) as fake:
        env = bench_env(root / "guard-home")
        (root / "home").mkdir()
        env.update(HOME=str(root / "home"), ANTHROPIC_BASE_URL=fake.url, ANTHROPIC_API_KEY="sk-ant-api03-bench-0123456789abcdefghij",
                   CLAUDE_CONFIG_DIR=str(config), CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1",
                   DISABLE_AUTOUPDATER="1", PATH=f"{Path(CLAUDE).parent}{os.pathsep}{os.environ['PATH']}")
        for k in ("ANTHROPIC_AUTH_TOKEN", "CLAUDECODE", "CLAUDE_CODE_ENTRYPOINT", "OTEL_LOGS_EXPORTER"):
            env.pop(k, None)
        t0 = time.monotonic()
        out = subprocess.run([sys.executable, "-m", "guard", "--max-usd", str(ceiling), "claude", "-p",
                              "loop forever", "--model", MODEL, "--allowedTools", "Bash"],
                             cwd=project, env=env, capture_output=True, text=True, timeout=900, check=False)
        seconds = time.monotonic() - t0
        requests = {r.n: r for r in fake.requests}
        costs, continuations, cont_cost, lowered = [], 0, 0.0, 0
        for s in fake.served:
            if s.status != 200:
                continue
            usd = PRICER.price(UsageEvent(key=str(s.n), source="bill", model=s.model,
                                          input_tokens=s.usage.input_tokens,
                                          output_tokens=s.usage.output_tokens,
                                          cache_write_tokens=s.usage.cache_write,
                                          cache_read_tokens=s.usage.cache_read)).usd
            costs.append(usd)
            req = requests.get(s.n)
            if req is not None and CONTINUATION in req.last_user_text:
                continuations += 1
                cont_cost += usd
            if req is not None and isinstance(req.body.get("max_tokens"), int) and req.body["max_tokens"] < 32000 \
                    and req.is_agent_loop:
                lowered += 1
        runs = subprocess.run([sys.executable, "-m", "guard", "runs", "--json"], env=env, capture_output=True,
                              text=True, check=True)
        ledger = json.loads(runs.stdout)[0]["usage"]["cost_usd"]
    bill = sum(costs)
    agent = sorted(c for c in costs if c > 0.01)
    return {"ceiling": ceiling, "bill": bill, "ledger": ledger, "calls": len(costs),
            "median": statistics.median(agent) if agent else 0.0, "lowered": lowered,
            "continuations": continuations, "continuation_usd": cont_cost, "exit": out.returncode,
            "seconds": seconds}


# -- aider ------------------------------------------------------------------------------------


def aider_once() -> int:
    root = Path(tempfile.mkdtemp(prefix="guard-ceilings-aider-"))
    repo, home = root / "repo", root / "home"
    repo.mkdir()
    home.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    (repo / "hello.py").write_text("print('hello')\n")
    meta = root / "meta.json"
    meta.write_text(json.dumps({"gpt-4o": {"max_tokens": 4096, "max_input_tokens": 128000,
                                           "max_output_tokens": 4096, "input_cost_per_token": 1e-6,
                                           "output_cost_per_token": 2e-6, "litellm_provider": "openai",
                                           "mode": "chat"}}))
    with FakeOpenAI(always_failing_edits("hello.py")) as fake:
        env = bench_env(root / "guard-home")
        env = {k: v for k, v in env.items() if not k.startswith(("AIDER_", "OPENAI_", "ANTHROPIC_"))}
        env.update(HOME=str(home), OPENAI_API_KEY="sk-fake", COLUMNS="100",
                   GIT_AUTHOR_NAME="b", GIT_AUTHOR_EMAIL="b@example.com", GIT_COMMITTER_NAME="b",
                   GIT_COMMITTER_EMAIL="b@example.com")
        args = ["--model", "gpt-4o", "--weak-model", "openai/fake-weak", "--edit-format", "diff",
                "--model-metadata-file", str(meta), "--openai-api-base", fake.url, "--no-analytics",
                "--no-check-update", "--no-show-release-notes", "--no-show-model-warnings", "--yes-always",
                "--no-auto-lint", "--no-auto-commits", "--no-dirty-commits", "--no-stream", "--no-pretty",
                "--no-fancy-input", "hello.py"]
        env["PATH"] = f"{Path(AIDER).parent}{os.pathsep}{env['PATH']}"
        messages = "".join(f"please fix hello.py, attempt {i}\n" for i in range(8))
        subprocess.run([sys.executable, "-m", "guard", "--max-steps", "3", "aider", *args], cwd=repo, env=env,
                       input=messages, capture_output=True, text=True, timeout=300, check=False)
        return int(fake.usage_totals(main_only=True)["calls"])


# -- admission time ---------------------------------------------------------------------------


def admission_times(n: int = 2000) -> list[float]:
    from guard.ledger import reservations

    home = Path(tempfile.mkdtemp(prefix="guard-ceilings-ledger-"))
    ledger = SqliteLedger(home / "ledger.db")
    now = time.time()
    budget = Budget("developer_usd", "developer:bench", "day", 1e6, 0.0, now - 3600, now + 3600)
    state = RunState(limits={"usd": 1e6, "steps": 1e9}, started_at=now, budgets=(budget,))
    cost = RequestCost(20_000, 0.075, 15e-6, 32_000)
    out = []
    for i in range(n):
        t0 = time.perf_counter()
        state, actions = decide(state, Admit(str(i), cost), time.time())
        rid = reservations.reserve(ledger, state.budgets, actions[0].shared_usd, "bench")  # type: ignore[union-attr]
        out.append(time.perf_counter() - t0)
        reservations.release(ledger, rid)
        state, _ = decide(state, Settled(str(i)), time.time())
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--usd", default="0.5,1,2,10")
    ap.add_argument("--cache", default="off,on", help="the fake bills no prompt cache (off), one (on)")
    ap.add_argument("--aider-runs", type=int, default=20)
    ap.add_argument("--load", action="store_true", help="keep both cores busy while measuring")
    a = ap.parse_args()
    hogs = busy_loops(os.cpu_count() or 2) if a.load else []
    try:
        print(f"conditions: default meter (proxy in front), {'both cores busy' if a.load else 'no added load'}")
        print("Claude Code 2.1.330, runaway Bash loop, 8,000-token answers, Sonnet 4.5 prices, the fake's bill:")
        print(f"{'cache':>5} {'ceiling':>8} {'bill':>8} {'ledger':>8} {'unused':>8} {'2 x median':>10} {'calls':>6} "
              f"{'lowered':>8} {'continuations':>14} {'exit':>5}")
        for cache, usd in ((c, float(x)) for c in a.cache.split(",") for x in a.usd.split(",")):
            r = claude_once(usd, cache == "on")
            unused = r["ceiling"] - r["bill"]
            verdict = "ok" if r["bill"] <= r["ceiling"] + 1e-9 and unused <= 2 * r["median"] + 1e-9 else "MISSED"
            print(f"{cache:>5} {r['ceiling']:>8.2f} {r['bill']:>8.4f} {r['ledger']:>8.4f} {unused:>8.4f} {2 * r['median']:>10.4f} "
                  f"{r['calls']:>6} {r['lowered']:>8} {r['continuations']:>5} (${r['continuation_usd']:.4f}) "
                  f"{r['exit']:>5}  {verdict}")
        if a.aider_runs:
            served = [aider_once() for _ in range(a.aider_runs)]
            print(f"aider 0.86.2, 3-step ceiling, {a.aider_runs} runs: main-model calls served per run "
                  f"min {min(served)}, max {max(served)} (target: at most 3) {'ok' if max(served) <= 3 else 'MISSED'}")
        times = admission_times()
        print(f"admission decision + shared reservation on SQLite: p50 {pct(times, 50) * 1e3:.3f} ms, "
              f"p99 {pct(times, 99) * 1e3:.3f} ms (target p50 <= 1 ms)")
    finally:
        for h in hogs:
            h.kill()


if __name__ == "__main__":
    main()
