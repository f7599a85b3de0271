"""Nothing inside the guarded tree can loosen its limits: a guarded agent that drops GUARD_RUN_ID
and tries `guard resume --raise-usd`, `guard budget grant`, also from a setsid double fork, is refused."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.helpers import guard_env, run_guard

pytestmark = pytest.mark.e2e

# The hostile agent: every attempt runs without GUARD_* in its environment, so only ancestry tells.
AGENT = r"""
import json, os, subprocess, sys
out, run_id = sys.argv[1], os.environ["GUARD_RUN_ID"]
env = {k: v for k, v in os.environ.items() if not k.startswith("GUARD_") or k == "GUARD_HOME"}
guard = [sys.executable, "-m", "guard"]
tries = {
    "resume": guard + ["resume", run_id, "--raise-usd", "100"],
    "grant": guard + ["budget", "grant", "--developer", "tester@example.com", "--usd", "50",
                      "--reason", "I need it"],
}
def attempt(name, argv):
    p = subprocess.run(argv, env=env, capture_output=True, text=True)
    return {"code": p.returncode, "err": p.stderr.strip()}
results = {name: attempt(name, argv) for name, argv in tries.items()}
r, w = os.pipe()
if os.fork() == 0:                      # a setsid double fork tries too
    os.setsid()
    if os.fork() == 0:
        os.close(r)
        os.write(w, json.dumps(attempt("escaped", tries["resume"])).encode())
        os._exit(0)
    os._exit(0)
os.close(w)
data = b""
while chunk := os.read(r, 65536):
    data += chunk
results["escaped-resume"] = json.loads(data)
open(out, "w").write(json.dumps(results))
"""


def test_a_guarded_agent_cannot_raise_its_own_limits(home: Path, tmp_path: Path) -> None:
    cfg = home / "guard.yaml"
    cfg.write_text("budgets:\n  developer: {day: 1}\n")
    env = guard_env(home, GUARD_CONFIG=str(cfg))
    results = tmp_path / "results.json"
    out = run_guard(home, "--max-usd", "1", "run", "--", sys.executable, "-c", AGENT, str(results), env=env,
                    timeout=120)
    assert out.returncode == 0, out.stderr
    tried = json.loads(results.read_text())
    assert set(tried) == {"resume", "grant", "escaped-resume"}
    for name, r in tried.items():
        assert r["code"] == 124, (name, r)
        assert "refused: this process is inside run" in r["err"], (name, r)
    # nothing reached the ledger; from outside, the same grant goes through
    shown = run_guard(home, "budget", "show", "--json", env=env)
    assert shown.returncode == 0, shown.stderr
    assert [c["granted"] for c in json.loads(shown.stdout)["ceilings"]] == [0]
    runs = json.loads(run_guard(home, "runs", "--json", env=env).stdout)
    details = json.loads(run_guard(home, "show", runs[0]["id"], "--json", env=env).stdout)
    assert details["approvals"] == []
    outside = run_guard(home, "budget", "grant", "--developer", "tester@example.com", "--usd", "5",
                        "--reason", "lead says so", env=env)
    assert outside.returncode == 0, outside.stderr
    shown = json.loads(run_guard(home, "budget", "show", "--json", env=env).stdout)
    assert [c["granted"] for c in shown["ceilings"]] == [5]


def test_a_config_written_during_a_run_is_named_at_the_next_start(home: Path, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    env = guard_env(home)
    writer = "open('.guard.yaml', 'w').write('max_usd: 1000\\n')"
    first = run_guard(home, "run", "--", sys.executable, "-c", writer, cwd=repo, env=env)
    assert first.returncode == 0, first.stderr
    assert "config changed" not in first.stderr
    run_id = json.loads(run_guard(home, "runs", "--json", env=env).stdout)[0]["id"]
    second = run_guard(home, "run", "--", sys.executable, "-c", "pass", cwd=repo, env=env)
    assert second.returncode == 0, second.stderr
    assert f".guard.yaml (written during run {run_id})" in second.stderr
