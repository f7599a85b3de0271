"""Fail closed: a cost signal that goes blind halts the run, it never means "unlimited"."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from guard.adapters.base import Adapter, EventSink, Launch, LaunchContext
from guard.config import load_settings
from guard.environment import Environment
from guard.ledger import open_ledger
from guard.supervisor.setup import supervisor

pytestmark = pytest.mark.e2e


class BlindAdapter(Adapter):
    """Starts a real agent; its cost signal breaks as a parser bug would."""

    name = "run"

    def prepare(self, ctx: LaunchContext) -> Launch:
        return Launch([sys.executable, "-c", "import time; time.sleep(30)"], dict(ctx.env))

    def start(self, sink: EventSink) -> None:
        pass

    def poll(self) -> None:
        raise ValueError("unexpected transcript shape")


def test_an_adapter_that_fails_halts_the_run(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path), "GUARD_HOME": str(tmp_path / "home"), "PATH": os.environ["PATH"],
           "XDG_CONFIG_HOME": str(tmp_path / "cfg"), "GUARD_DEVELOPER": "t@example.com"}
    r, w = os.pipe()  # not a terminal: no PTY, the default action is stop
    envr = Environment(env=env, cwd=tmp_path, stdin_fd=r, stdout_fd=w)
    settings = load_settings(env, tmp_path, {"grace": "0.5s"})
    ledger = open_ledger(None, tmp_path / "home")
    run = supervisor(envr, settings, ledger, BlindAdapter(), "run", ["agent"])
    try:
        assert run.execute() == 124
    finally:
        os.close(r)
        os.close(w)
    record = ledger.get_run(run.run_id)
    assert record.status == "halted" and record.halt is not None
    assert record.halt.ceiling == "adapter_error" and "unexpected transcript shape" in record.halt.message
