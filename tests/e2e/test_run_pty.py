"""guard between a person's terminal and the agent: a real PTY driven with pexpect."""
from __future__ import annotations

import sys

import pexpect
import pytest

from tests.helpers import AGENTS, guard_env, last_run, pids_alive, wait_until

pytestmark = pytest.mark.e2e
TTY_AGENT = str(AGENTS / "tty_agent.py")


def spawn_guard(home, *args, rows=30, cols=100):
    child = pexpect.spawn(sys.executable, ["-m", "guard", *args], env=guard_env(home), cwd=str(home),
                          dimensions=(rows, cols), encoding="utf-8", timeout=20)
    return child


def test_terminal_passes_through_with_size_and_ctrl_c(home):
    child = spawn_guard(home, "run", "--", "python3", TTY_AGENT, rows=33, cols=101)
    child.expect("tty=True size=33x101")
    child.sendline("hello there")
    child.expect("echo hello there")
    child.setwinsize(40, 120)
    child.expect("winch 40x120")
    child.sendcontrol("c")
    child.expect("got SIGINT")   # Ctrl-C reached the agent, not guard
    child.sendline("quit")
    child.expect("bye")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


def test_pause_prompt_raise_then_continue_then_stop(home):
    child = spawn_guard(home, "--max-usd", "0.5", "run", "--", "python3", TTY_AGENT)
    child.expect("tty=True")
    child.sendline("spend 5")
    child.expect(r"guard: paused: halted at step 5: \$0.50 task ceiling reached")
    child.expect(r"\[r\]aise")
    assert last_run(home)["status"] == "paused"
    child.send("r")
    child.expect("raise by how much")
    child.sendline("0.3")
    child.expect("winch")          # the agent was frozen, not killed: it is repainted and goes on
    child.sendline("spend 3")
    child.expect(r"\$0.80 task ceiling reached")
    child.send("c")                # continue past it for this run
    child.sendline("spend 2")
    child.expect("spent 10")
    child.sendline("quit")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    run = last_run(home)
    assert run["status"] == "completed" and run["usage"]["cost_usd"] == pytest.approx(1.0)
    from tests.helpers import run_guard

    shown = run_guard(home, "show", run["id"], "--json").stdout
    assert '"amount": 0.3' in shown and '"amount": null' in shown


def test_pause_prompt_stop_ends_the_run(home, tag):
    child = spawn_guard(home, "--max-steps", "2", "run", "--", "python3", TTY_AGENT, tag)
    child.expect("tty=True")
    child.sendline("spend 3")
    child.expect(r"\[r\]aise")
    child.send("s")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 124
    assert last_run(home)["status"] == "halted"
    assert not pids_alive(tag)


def test_terminal_restored_after_the_agent_is_killed(home, tmp_path):
    """guard puts the terminal in raw mode; whatever happens to the agent, it is put back."""
    script = tmp_path / "check.py"
    script.write_text(
        "import os, subprocess, sys, termios\n"
        "before = termios.tcgetattr(0)\n"
        "subprocess.run([sys.executable, '-m', 'guard', 'run', '--', 'sh', '-c', 'kill -9 $$'])\n"
        "after = termios.tcgetattr(0)\n"
        "print('restored' if before == after else 'CHANGED')\n")
    child = pexpect.spawn(sys.executable, [str(script)], env=guard_env(home), cwd=str(home),
                          encoding="utf-8", timeout=20)
    child.expect(["restored", "CHANGED"])
    assert child.after == "restored"
    child.expect(pexpect.EOF)
    child.close()
    wait_until(lambda: last_run(home)["exit_code"] == 137, message="exit code of a SIGKILLed agent")


def test_ctrl_z_suspends_guard_and_the_agent_and_fg_resumes_both(home, tag):
    import psutil

    shell = pexpect.spawn("bash", ["--norc", "--noprofile", "-i"], env={**guard_env(home), "PS1": "SHELL$ "},
                          cwd=str(home), encoding="utf-8", timeout=20, dimensions=(30, 100))
    try:
        shell.expect_exact("SHELL$ ")
        shell.sendline(f"{sys.executable} -m guard run -- python3 {TTY_AGENT} {tag}")
        shell.expect("tty=True")
        shell.sendcontrol("z")
        shell.expect("Stopped")
        shell.expect_exact("SHELL$ ")
        agents = wait_until(lambda: pids_alive(tag), message="the agent's pid")
        assert all(psutil.Process(pid).status() == psutil.STATUS_STOPPED for pid in agents)
        shell.sendline("fg")
        wait_until(lambda: all(psutil.Process(pid).status() != psutil.STATUS_STOPPED for pid in agents),
                   message="the agent to run again")
        shell.sendline("after fg")
        shell.expect("echo after fg")
        shell.sendline("quit")
        shell.expect("bye")
        shell.expect_exact("SHELL$ ")
        shell.sendline("echo status=$?")
        shell.expect("status=0")
    finally:
        shell.sendline("exit")
        shell.close(force=True)
