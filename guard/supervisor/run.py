"""One supervised run, a thin host around the decision core: it turns the world (cost signals,
proxied requests, signals, keys, `guard stop/resume`, time) into events for `decide` and carries
the actions out through `Effects`, the ledger first."""
from __future__ import annotations

import os
import select
import signal
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from guard import otel_export, outcomes
from guard.adapters.base import Adapter
from guard.environment import Environment
from guard.errors import ExitStatus, Refused
from guard.governor import RunState, start
from guard.governor.events import AdapterFailed, Budgets, Event, Exited, LedgerUnreachable, Tick
from guard.ledger import Ledger, reservations
from guard.ledger.offline import LedgerOffline
from guard.ledger.records import RunRecord
from guard.meter import Meter
from guard.plan import RunPlan
from guard.pricing import Pricer
from guard.sink import Sink
from guard.supervisor import launch_env, ledger_view, mail, reaper
from guard.supervisor.console import Console
from guard.supervisor.core_link import CoreLink
from guard.supervisor.desk import RequestDesk
from guard.supervisor.effects import Effects
from guard.supervisor.signals import SignalPipe
from guard.supervisor.spawn import Child, spawn, start_sentinel
from guard.supervisor.tree import ProcessTree

POLL_INTERVAL = 1.0        # safety-net read of the cost signals when no watcher woke us
CONTROL_INTERVAL = 0.5     # how often `guard stop/resume` rows are looked for without a signal
BUDGET_INTERVAL = 5.0      # other runs' shared spend, when no event of ours made us re-read it
PASSED_ON = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT, signal.SIGQUIT)


class Supervisor:
    def __init__(self, envr: Environment, plan: RunPlan, ledger: Ledger, adapter: Adapter, tool_args: list[str],
                 identity: Any, pricer: Pricer, notify: dict[str, Any], policy: Any = None,
                 wrapper_dirs: tuple[Path, ...] = (), options: dict[str, Any] | None = None) -> None:
        self.envr, self.plan, self.ledger, self.adapter = envr, plan, ledger, adapter
        self.tool_args, self.identity, self.pricer = tool_args, identity, pricer
        self.policy, self.wrapper_dirs, self.options = policy, wrapper_dirs, options or {}
        self.run_id = uuid.uuid4().hex[:12]
        self.task = plan.task or self.run_id
        self.started_at = time.time()
        self.run_dir = envr.home / "runs" / self.run_id
        self.meter = Meter(self.run_id, ledger, pricer)
        self.sink = Sink()
        state = ledger_view.initial_state(plan, ledger, self.task, self.run_id, self.started_at, envr.interactive,
                                          adapter)
        self.core = CoreLink(state, lambda apply: RequestDesk(
            apply, lambda est, step: launch_env.request_cost(pricer, est, step),
            lambda usd: reservations.reserve(ledger, self.state.budgets, usd, self.run_id), self.sink.settle),
            self.sink.wake)
        self.console = Console(envr.stdin_fd, envr.stdout_fd)
        self.fx = Effects(self.run_id, self.task, identity.developer, ledger, adapter, self.run_dir / "state.json",
                          envr.interactive, envr.say, self.console.say, self.console.title, notify, identity,
                          self.console.repaint)
        self.child: Child | None = None
        self.sentinel: Any = None
        self.proxy: Any = None
        self.exit_code: int | None = None
        self._due = {"poll": 0.0, "control": 0.0, "budgets": time.monotonic()}
        # loading prices takes a few hundred ms: overlap it with the start, but have it done before
        # the agent's first call needs pricing (a late first decision lets a fast agent run on).
        # Not a daemon: one still loading at exit aborted the interpreter (SIGABRT, not exit 124).
        self._warm = threading.Thread(target=pricer.warm, name="guard-prices")

    # -- the core ---------------------------------------------------------------------------

    @property
    def state(self) -> RunState:
        return self.core.state

    def _carry_out(self) -> None:
        """Ledger writes and signals, in decision order, in the loop thread."""
        actions = self.core.take()
        for a in actions:
            self.fx.do(a)
        if actions:
            self._write_state()

    def _feed(self, event: Event) -> None:
        self.core.apply(event)
        self._carry_out()

    # -- start ----------------------------------------------------------------------------------

    def _record(self, **kw: Any) -> RunRecord:
        i = self.identity
        return RunRecord(id=self.run_id, tool=self.plan.tool, task=self.task, developer=i.developer, team=i.team,
                         machine=i.machine, line=i.line, started_at=self.started_at, cwd=str(self.envr.cwd),
                         argv=self.tool_args, limits=dict(self.state.limits),
                         limit_sources=self.plan.limit_sources(), guard_pid=os.getpid(),
                         **outcomes.capture_start(self.envr.cwd), **kw)

    def execute(self) -> int:
        for line in self.plan.notices:
            self.envr.say(line)
        if self.plan.budgets_enabled:
            self.core.state.budgets = ledger_view.read(self.ledger, self.identity, self.policy, self.run_id)
        halt = start.refusal(self.state, time.time(), self.plan.task, ledger_view.task_halts(self.ledger, self.plan.task))
        if halt is not None:
            self.ledger.create_run(self._record(status="refused", halt=halt, ended_at=time.time()))
            raise Refused(halt.message)
        self._warm.start()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        ctx = launch_env.context(self.state, self.run_id, self.envr, self.run_dir, self.fx.state_path,
                                 self.tool_args, self.options, self.wrapper_dirs, self.plan.meter)
        if ctx.meter == "proxy":
            self.proxy = launch_env.start_metering_proxy(ctx, self.plan.tool, self.sink, self.core.desk,
                                                         self.pricer)
        launch = self.adapter.prepare(ctx)
        self.core.state.graceful = ledger_view.stop_grace(self.plan, self.adapter)   # known once prepared
        self.ledger.create_run(self._record(status="running"))
        for key, message in self.adapter.start_notices(self.pricer):
            if self.ledger.add_notice(self.run_id, key, message):
                self.fx.show(message)
        self._write_state()
        try:
            return self._supervise(launch.argv, launch.env)
        except BaseException:
            self._crashed()
            raise

    # -- the loop -------------------------------------------------------------------------------

    def _supervise(self, argv: list[str], env: dict[str, str]) -> int:
        from guard.supervisor import linux
        from guard.supervisor.linux import become_subreaper

        held_by = linux.held_by(become_subreaper())
        size = self.console.take_terminal() if self.envr.interactive else None
        with SignalPipe((signal.SIGCHLD, signal.SIGWINCH, signal.SIGUSR1, *PASSED_ON)) as sigs:
            self.adapter.start(self.sink)   # watchers first: the agent's first lines are not missed
            self._warm.join()
            try:
                self.child = spawn(argv, env, str(self.envr.cwd), self.envr.interactive, size)
                self.sentinel = start_sentinel(self.child.pid, self.run_id)
                tree = ProcessTree(self.child.pid, exclude=lambda: {self.sentinel.pid}, run_id=self.run_id)
                self.fx.tree = self.console.tree = tree
                self.console.master_fd = self.child.master_fd
                self.ledger.update_run(self.run_id, agent_pid=self.child.pid, held_by=held_by)
                if self.console.terminal is not None:
                    self.console.terminal.raw()
                self._loop(sigs)
            finally:
                if self.console.terminal is not None:
                    self.console.restore_modes()
                    self.console.terminal.restore()
        return self._finish()

    def _loop(self, sigs: SignalPipe) -> None:
        assert self.child is not None
        self.console.start_pump(getattr(self.adapter, "feed_output", None), self.sink.wake)
        stdin_open = self.envr.interactive
        while True:
            rfds = [self.sink.read_fd, sigs.fd] + ([self.envr.stdin_fd] if stdin_open else [])
            try:
                ready, _, _ = select.select(rfds, [], [], self._timeout())
            except InterruptedError:
                ready = []
            if sigs.fd in ready or sigs.pending:
                self._on_signals(sigs.take())
            if stdin_open and self.envr.stdin_fd in ready:
                paused = self.state.phase == "paused" and self.envr.interactive
                stdin_open = self.console.read_keys(paused, self._prompt_keys)
            self._tick()
            code = self.child.popen.poll()
            if code is not None:
                self.exit_code = code if code >= 0 else 128 - code
                break
        self.console.finish_pump()
        # what is left of the tree goes first; whatever it still spends meanwhile is read
        reaper.sweep(self.fx.tree, self._reap, during=self._drain_polled)
        try:
            self.adapter.close()
        except Exception as e:  # noqa: BLE001 - the agent is gone; say what may be missing
            self.sink.notice("adapter-close", f"the {self.plan.tool} adapter failed reading the last records "
                                              f"({type(e).__name__}: {e}); this run's usage may be incomplete")
        self._drain()
        self._feed(Exited(self.exit_code or 0))

    def _drain_polled(self) -> None:
        try:
            self.adapter.poll()
        except Exception:  # noqa: BLE001 - the agent is gone: close() reads the rest, or says so
            pass
        self._drain()

    def _timeout(self) -> float:
        deadline = self.state.next_deadline(time.time())
        return 0.25 if deadline is None else min(0.25, max(0.0, deadline - time.time()) + 0.001)

    def _tick(self) -> None:
        mono = time.monotonic()
        if mono >= self._due["poll"]:
            self._due["poll"] = mono + POLL_INTERVAL
            try:
                self.adapter.poll()
            except Exception as e:  # noqa: BLE001 - fail closed: a blind meter halts the run
                self._feed(AdapterFailed(f"the {self.plan.tool} adapter failed ({type(e).__name__}: {e}); "
                                         "spend can no longer be metered"))
        if mono >= self._due["control"]:
            self._due["control"] = mono + CONTROL_INTERVAL
            self._controls()
        if self.state.budgets and mono >= self._due["budgets"]:
            self._refresh_budgets()
        self._drain()
        self._feed(Tick())
        if self.fx.state_dirty:
            self._write_state(soon=True)

    def _refresh_budgets(self) -> None:
        self._due["budgets"] = time.monotonic() + BUDGET_INTERVAL
        try:
            budgets = ledger_view.read(self.ledger, self.identity, self.policy, self.run_id)
        except LedgerOffline as e:   # the offline policy says shared spend cannot be known
            self._feed(LedgerUnreachable(str(e)))
            return
        self._feed(Budgets(budgets))

    def _drain(self) -> None:
        """Everything the adapters and the proxy reported: recorded, then decided on."""
        got = self.sink.take()
        if got.events and self.state.budgets:
            self._refresh_budgets()   # others' spend, read where the decision needs it
        for event in mail.record(got, self.meter, self.ledger, self.run_id, self.fx.show):
            self._feed(event)
        if got.events:
            self._write_state(soon=True)

    def _controls(self) -> None:
        for event in ledger_view.controls(self.ledger, self.run_id):
            self._feed(event)

    def _on_signals(self, sigs: list[int]) -> None:
        for sig in sigs:
            if sig == signal.SIGWINCH:
                self.console.resize()
            elif sig == signal.SIGUSR1:
                self._controls()
            elif sig == signal.SIGCHLD:
                self._reap()
            elif sig in PASSED_ON and self.fx.tree is not None:
                # guard is asked to end: pass it on to the agent and keep supervising its exit
                if self.fx.frozen:
                    self.fx.tree.resume()
                self.fx.tree.signal(sig)

    def _prompt_keys(self, text: str) -> None:
        answer = self.fx.prompt_answer(text)
        if answer is not None:
            self._feed(answer)

    def _reap(self) -> None:
        reaper.reap_orphans({self.child.pid if self.child else -1, self.sentinel.pid if self.sentinel else -1})

    def _write_state(self, soon: bool = False) -> None:
        """`soon`: new spend only (hooks and the status line show it), at most every 50 ms."""
        s = self.state
        self.fx.write_state(self.meter.totals.as_dict(), s.ceilings(time.time()), s.halt, s.phase == "paused",
                            soon)

    # -- the end --------------------------------------------------------------------------------

    def _finish(self) -> int:
        if self.proxy is not None:
            self.proxy.stop()
            self._drain()
        if self.sentinel is not None:
            reaper.dismiss_sentinel(self.sentinel)
        if self.state.budgets:
            reservations.release_run(self.ledger, self.run_id)
        halted = self.state.halted
        ledger_view.close_run(self.ledger, self.run_id, self.meter.totals.calls, self.state.estimated, self.fx.show,
                              status="halted" if halted else "completed", exit_code=self.exit_code,
                              ended_at=time.time(), skipped_records=self.adapter.skipped_records(),
                              **outcomes.capture_end(self.envr.cwd))
        otel_export.export_run(self.ledger, self.run_id, self.envr.env)
        self._write_state()
        self.sink.close()
        self.fx.farewell(self.state.halt if halted else None, self.meter.totals, self.adapter.skipped_records())
        return int(ExitStatus.HALTED) if halted else (self.exit_code or 0)

    def _crashed(self) -> None:
        reaper.crashed(self.fx.tree, lambda: self.ledger.update_run(self.run_id, status="crashed", ended_at=time.time()))
