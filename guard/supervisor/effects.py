"""Carrying out the decision core's actions: the ledger first, then the tree, the terminal,
the adapter. One object, so the host loop stays a loop and tests can look at what was done."""
from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from guard import budgets
from guard.adapters.base import Adapter
from guard.governor.ceilings import Ceiling
from guard.governor.events import (
    Action,
    Answer,
    Approve,
    AskUser,
    Freeze,
    Grant,
    MarkEstimated,
    Notify,
    RecordHalt,
    Resumed,
    Signal,
    Thaw,
    WindDown,
)
from guard.ledger import Ledger
from guard.ledger.records import Approval
from guard.supervisor.prompt import PausePrompt
from guard.supervisor.tree import ProcessTree

STATE_EVERY = 0.05    # new spend reaches the state file at most this often


@dataclass
class Effects:
    run_id: str
    task: str
    who: str                                   # the developer, for approvals
    ledger: Ledger
    adapter: Adapter
    state_path: Path
    interactive: bool
    show_line: Callable[[str], None]           # a notice on stderr (pipes)
    tty: Callable[[str], None]                 # text to the terminal, in order with the agent's output
    title: Callable[[str], None]               # the terminal's window title
    notify_config: dict[str, Any]
    identity: Any
    repaint: Callable[[], None] = lambda: None
    tree: ProcessTree | None = None
    frozen: bool = False
    prompt_kind: str | None = None
    warned: list[str] = field(default_factory=list)     # soft notices, repeated after the run
    shown: list[str] = field(default_factory=list)      # notices shown on a terminal's title
    prompt: PausePrompt | None = None
    state_dirty: bool = False
    _state_at: float = -1e9

    def __post_init__(self) -> None:
        self.prompt = PausePrompt(self.tty)

    def do(self, a: Action) -> None:
        getattr(self, "_" + type(a).__name__)(a)

    # -- the ledger first ---------------------------------------------------------------------

    def _RecordHalt(self, a: RecordHalt) -> None:  # noqa: N802
        self.ledger.update_run(self.run_id, status=a.status, halt=a.halt)
        if a.task_halt:
            self.ledger.mark_task_halted(self.task, a.halt.ceiling, self.run_id)

    def _Approve(self, a: Approve) -> None:  # noqa: N802
        self.ledger.add_approval(Approval(self.run_id, self.task, a.kind, a.amount, self.who_by(a.by),
                                          reason=a.reason, ts=time.time()))

    def _Grant(self, a: Grant) -> None:  # noqa: N802
        budgets.grant(self.ledger, a.scope, a.usd, self.who_by(a.by), f"{a.reason} (run {self.run_id})",
                      period=a.period)

    def _Resumed(self, a: Resumed) -> None:  # noqa: N802
        self.ledger.update_run(self.run_id, status="running", halt=None, limits=a.limits)

    def _MarkEstimated(self, a: MarkEstimated) -> None:  # noqa: N802
        self.ledger.update_run(self.run_id, accuracy="estimated")

    def _Notify(self, a: Notify) -> None:  # noqa: N802
        if a.shared is not None:
            scope, period, since, threshold = a.shared
            if not budgets.mark_notified(self.ledger, scope, period, since, threshold, a.message):
                return
            budgets.deliver(self.notify_config, {
                "event": "guard.budget.threshold", "message": a.message, "threshold": threshold,
                "scope": scope, "period": period, "developer": self.identity.developer,
                "team": self.identity.team, "machine": self.identity.machine, "run_id": self.run_id})
        elif not self.ledger.add_notice(self.run_id, a.key, a.message):
            return
        self.show(("warning: " if a.soft else "") + a.message, soft=a.soft)

    # -- then the world -----------------------------------------------------------------------

    def _Freeze(self, a: Freeze) -> None:  # noqa: N802
        assert self.tree is not None
        self.tree.stop()
        self.frozen = True

    def _Thaw(self, a: Thaw) -> None:  # noqa: N802
        assert self.tree is not None
        self.frozen = False
        self.tree.resume()
        self.repaint()

    def _AskUser(self, a: AskUser) -> None:  # noqa: N802
        self.prompt_kind = a.raise_kind
        if self.interactive:
            assert self.prompt is not None
            self.prompt.open(a.message, a.raise_kind, soft=self.warned)
            return
        flag = a.raise_kind or "usd"
        self.show(f"paused: {a.message}; resume with `guard resume {self.run_id} --raise-{flag} AMOUNT`, "
                  f"`guard resume {self.run_id}` to continue past it, or `guard stop {self.run_id}`")

    def _WindDown(self, a: WindDown) -> None:  # noqa: N802
        self.adapter.on_halt(a.message)

    def _Signal(self, a: Signal) -> None:  # noqa: N802
        assert self.tree is not None
        self.tree.signal(a.signum)

    # -- words ----------------------------------------------------------------------------------

    def prompt_answer(self, text: str) -> Answer | None:
        """Keys typed at the pause prompt, once they make an answer."""
        assert self.prompt is not None
        answer = self.prompt.feed(text)
        if answer is None:
            return None
        kind = self.prompt_kind
        raises = {kind: answer.amount} if answer.choice == "raise" and kind and answer.amount else {}
        return Answer(answer.choice, "prompt", raises)

    def who_by(self, by: str) -> str:
        return f"{self.who} ({by})"

    def show(self, message: str, soft: bool = False) -> None:
        """A notice that must not corrupt a full-screen agent: on a terminal it goes to the
        window title and is repeated after the run; on pipes it is a plain stderr line."""
        if soft:
            self.warned.append(message.removeprefix("warning: "))
        if self.interactive:
            self.shown.append(message)
            self.title(f"guard: {message}")
        else:
            self.show_line(message)

    def farewell(self, halt: Any, totals: Any, skipped: int) -> None:
        """After the run, on stderr: what went to the window title, and why guard halted."""
        for message in self.shown:
            self.show_line(message)
        if halt is not None:
            self.show_line(f"{halt.message} (run {self.run_id}: ${totals.cost_usd:.2f}, {totals.tokens} tokens, "
                           f"{totals.steps} steps)")
        if skipped:
            self.show_line(f"skipped {skipped} unreadable usage record(s)")

    def write_state(self, totals: dict[str, Any], ceilings: list[Ceiling], halt: Any, paused: bool,
                    soon: bool = False) -> None:
        """What hooks and the status line read: the hooks refuse every tool call once halted.
        `soon`: a change that may wait up to STATE_EVERY (it is written then, by the next call)."""
        now = time.monotonic()
        if soon and now - self._state_at < STATE_EVERY:
            self.state_dirty = True
            return
        self._state_at, self.state_dirty = now, False
        state = {
            "run_id": self.run_id, "task": self.task, "totals": totals,
            "ceilings": [{"name": c.name, "limit": c.limit, "used": round(c.used, 6), "scope": c.scope}
                         for c in ceilings],
            "halt": {"ceiling": halt.ceiling, "message": halt.message} if halt is not None and not paused else None,
            "paused": paused,
            "soft": [{"message": m} for m in self.warned],
            "updated_at": time.time(),
        }
        tmp = self.state_path.with_suffix(".tmp")
        try:
            tmp.write_text(json.dumps(state))
            os.replace(tmp, self.state_path)
        except OSError:
            pass
