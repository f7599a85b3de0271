"""One supervised run, as a thin host around the decision core.

Every decision is `decide(state, event, now)`; this loop only turns the world into events (cost
signals, proxied requests, signals, keys at the pause prompt, `guard stop/resume` rows, time)
and carries the actions out through `Effects`, the ledger first. Single-threaded but for the
proxy's request threads, which only feed `Admit` events and wait for their verdict."""
from __future__ import annotations

import os
import select
import signal
import threading
import time
import uuid
from collections import deque
from pathlib import Path
from typing import Any

from guard.adapters.base import Adapter, LaunchContext, Remaining
from guard.environment import Environment
from guard.errors import ExitStatus, Refused
from guard.governor import RunState, decide, start
from guard.governor.events import (
    AdapterFailed, AdapterHalt, Answer, Budgets, Event, Exited, Forward, Hold, PriceUnknown, Refuse,
    Settled, Spent, StopAsked, Tick,
)
from guard.ledger import Ledger, reservations
from guard.ledger.records import RunRecord
from guard.meter import Meter
from guard.plan import RunPlan
from guard.pricing import Pricer
from guard.sink import Sink
from guard.supervisor import launch_env, ledger_view, reaper
from guard.supervisor.desk import RequestDesk
from guard.supervisor.effects import Effects
from guard.supervisor.pump import OutputPump
from guard.supervisor.signals import SignalPipe
from guard.supervisor.spawn import Child, spawn, start_sentinel
from guard.supervisor.terminal import Terminal, get_size, set_size, write_all
from guard.supervisor.tree import ProcessTree
from guard.usage import Totals

SUSPEND_KEY = b"\x1a"      # Ctrl-Z
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
        self.state = ledger_view.initial_state(plan, ledger, self.task, self.run_id, self.started_at, envr.interactive,
                                          adapter)
        self.fx = Effects(self.run_id, self.task, identity.developer, ledger, adapter, self.run_dir / "state.json",
                          envr.interactive, envr.say, self._tty, notify, identity, self._repaint)
        self.desk = RequestDesk(self.apply, self._price_request, self._reserve_shared, self.sink.settle)
        self._lock = threading.Lock()
        self._todo: deque[Any] = deque()
        self.child: Child | None = None
        self.sentinel: Any = None
        self.terminal: Terminal | None = None
        self.pump: OutputPump | None = None
        self.proxy: Any = None
        self.exit_code: int | None = None
        self._due = {"poll": 0.0, "control": 0.0, "budgets": time.monotonic()}
        # loading prices takes a few hundred ms: overlap it with the start, but have it done before
        # the agent's first call needs pricing (a late first decision lets a fast agent run on)
        self._warm = threading.Thread(target=pricer.warm, name="guard-prices", daemon=True)
        self._warm.start()

    # -- the core, from any thread ------------------------------------------------------------

    def apply(self, event: Event) -> None:
        with self._lock:
            self.state, actions = decide(self.state, event, time.time())
            for a in actions:
                if isinstance(a, (Forward, Refuse, Hold)):
                    self.desk.resolve(a)
                else:
                    self._todo.append(a)
        if self._todo and threading.current_thread() is not threading.main_thread():
            self.sink.wake()

    def _carry_out(self) -> None:
        """The loop thread's half of apply(): ledger writes and signals, in decision order."""
        acted = False
        while self._todo:
            self.fx.do(self._todo.popleft())
            acted = True
        if acted:
            self._write_state()

    def _feed(self, event: Event) -> None:
        self.apply(event)
        self._carry_out()

    # -- start ----------------------------------------------------------------------------------

    def _record(self, **kw: Any) -> RunRecord:
        i = self.identity
        return RunRecord(id=self.run_id, tool=self.plan.tool, task=self.task, developer=i.developer, team=i.team,
                         machine=i.machine, line=i.line, started_at=self.started_at, cwd=str(self.envr.cwd),
                         argv=self.tool_args, limits=dict(self.state.limits),
                         limit_sources=self.plan.limit_sources(), guard_pid=os.getpid(), **kw)

    def execute(self) -> int:
        for line in self.plan.notices:
            self.envr.say(line)
        if self.plan.budgets_enabled:
            self.state.budgets = ledger_view.read(self.ledger, self.identity, self.policy, self.run_id)
        halt = start.refusal(self.state, time.time(), self.plan.task, ledger_view.task_halts(self.ledger, self.plan.task))
        if halt is not None:
            self.ledger.create_run(self._record(status="refused", halt=halt, ended_at=time.time()))
            raise Refused(halt.message)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        rem = launch_env.remaining(self.state, time.time())
        env = {**self.envr.env, **launch_env.budget_env(self.run_id, rem)}
        ctx = LaunchContext(run_id=self.run_id, tool_args=self.tool_args, env=env, run_dir=self.run_dir,
                            state_path=self.fx.state_path, cwd=self.envr.cwd, started_at=self.started_at,
                            interactive=self.envr.interactive, remaining=rem, options=self.options,
                            wrapper_dirs=self.wrapper_dirs, meter=self.plan.meter)
        if ctx.meter == "proxy":
            self._start_proxy(ctx)
        launch = self.adapter.prepare(ctx)
        self.ledger.create_run(self._record(status="running"))
        self._write_state()
        try:
            return self._supervise(launch.argv, launch.env)
        except BaseException:
            self._crashed()
            raise

    def _start_proxy(self, ctx: LaunchContext) -> None:
        from guard.proxy import start_proxy
        from guard.proxy.env import aider_upstream_env

        # forward to wherever the tool itself would have gone (aider: after its .env files)
        tool = self.plan.tool
        upstream = aider_upstream_env(ctx.env, ctx.cwd, ctx.tool_args) if tool == "aider" else ctx.env
        self.proxy = start_proxy(self.sink, self.desk, self.pricer, upstream)
        ctx.env.update(self.proxy.client_env(tool))
        ctx.tool_args = ctx.tool_args + self.proxy.client_args(tool, ctx.tool_args)

    def _price_request(self, est: Any, step: bool) -> Any:
        return launch_env.request_cost(self.pricer, est, step)

    def _reserve_shared(self, usd: float) -> str | None:
        return reservations.reserve(self.ledger, self.state.budgets, usd, self.run_id)

    # -- the loop -------------------------------------------------------------------------------

    def _supervise(self, argv: list[str], env: dict[str, str]) -> int:
        from guard.supervisor.linux import become_subreaper

        become_subreaper()
        size = None
        if self.envr.interactive:
            self.terminal = Terminal(self.envr.stdin_fd)
            try:
                size = get_size(self.envr.stdin_fd)
            except OSError:
                size = None
        with SignalPipe((signal.SIGCHLD, signal.SIGWINCH, signal.SIGUSR1, *PASSED_ON)) as sigs:
            self.adapter.start(self.sink)   # watchers first: the agent's first lines are not missed
            self._warm.join()
            try:
                self.child = spawn(argv, env, str(self.envr.cwd), self.envr.interactive, size)
                self.sentinel = start_sentinel(self.child.pid, self.run_id)
                self.fx.tree = ProcessTree(self.child.pid, exclude=lambda: {self.sentinel.pid}, run_id=self.run_id)
                self.ledger.update_run(self.run_id, agent_pid=self.child.pid)
                if self.terminal is not None:
                    self.terminal.raw()
                self._loop(sigs)
            finally:
                if self.terminal is not None:
                    self.terminal.restore()
        return self._finish()

    def _loop(self, sigs: SignalPipe) -> None:
        assert self.child is not None
        master = self.child.master_fd
        if master is not None:
            self.pump = OutputPump(master, self.envr.stdout_fd, getattr(self.adapter, "feed_output", None),
                                   on_eof=self.sink.wake)
            self.pump.start()
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
                stdin_open = self._copy_in(master)
            self._tick()
            code = self.child.popen.poll()
            if code is not None:
                self.exit_code = code if code >= 0 else 128 - code
                break
        if self.pump is not None:
            self.pump.finish()
        try:
            self.adapter.close()
        except Exception as e:  # noqa: BLE001 - the agent is gone; say what may be missing
            self.sink.notice("adapter-close", f"the {self.plan.tool} adapter failed reading the last records "
                                              f"({type(e).__name__}: {e}); this run's usage may be incomplete")
        self._drain()
        self._feed(Exited(self.exit_code or 0))
        reaper.sweep(self.fx.tree, self._reap)

    def _timeout(self) -> float:
        deadline = self.state.next_deadline(time.time())
        t = 0.25 if deadline is None else min(0.25, max(0.0, deadline - time.time()) + 0.001)
        return t

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

    def _refresh_budgets(self) -> None:
        self._due["budgets"] = time.monotonic() + BUDGET_INTERVAL
        self._feed(Budgets(ledger_view.read(self.ledger, self.identity, self.policy, self.run_id)))

    def _drain(self) -> None:
        """Everything the adapters and the proxy reported: recorded, then decided on."""
        mail = self.sink.take()
        if mail.events:
            if self.state.budgets:
                self._refresh_budgets()   # others' spend, read where the decision needs it
            recorded = self.meter.record_batch(mail.events)
            for r in recorded:
                if not r.price.known:
                    self._feed(PriceUnknown(r.event.model, r.price.basis))
            self._feed(Spent(Totals().plus(self.meter.totals), sum(r.new for r in recorded),
                             any(r.event.estimated for r in recorded) or mail.accuracy == "estimated"))
        elif mail.accuracy == "estimated":
            self._feed(Spent(Totals().plus(self.meter.totals), 0, True))
        for rid, shared in mail.settles:   # after the events: a hold is released only once recorded
            if shared is not None:
                reservations.release(self.ledger, shared)
            self._feed(Settled(rid))
        for key, message in mail.notices:
            if self.ledger.add_notice(self.run_id, key, message):
                self.fx.show(message)
        for key, message in mail.notes:
            self.ledger.add_notice(self.run_id, key, message)
        for ceiling, message in mail.halts:
            self._feed(AdapterHalt(ceiling, message))
        self._carry_out()

    def _controls(self) -> None:
        for control in self.ledger.take_controls(self.run_id):
            by = control.payload.get("by", "guard resume")
            if control.action == "stop":
                self._feed(StopAsked(by))
            elif control.action == "resume":
                raises = {k: float(v) for k, v in control.payload.get("raise", {}).items()}
                self._feed(Answer("raise" if raises else "continue", by, raises))

    def _on_signals(self, sigs: list[int]) -> None:
        for sig in sigs:
            if sig == signal.SIGWINCH and self.child and self.child.master_fd is not None:
                try:
                    set_size(self.child.master_fd, *get_size(self.envr.stdin_fd))
                except OSError:
                    pass
            elif sig == signal.SIGUSR1:
                self._controls()
            elif sig == signal.SIGCHLD:
                self._reap()
            elif sig in PASSED_ON and self.fx.tree is not None:
                # guard is asked to end: pass it on to the agent and keep supervising its exit
                if self.fx.frozen:
                    self.fx.tree.resume()
                self.fx.tree.signal(sig)

    def _copy_in(self, master: int | None) -> bool:
        try:
            data = os.read(self.envr.stdin_fd, 1 << 14)
        except OSError:
            return False
        if not data:
            return False
        if self.state.phase == "paused" and self.envr.interactive:
            assert self.fx.prompt is not None
            answer = self.fx.prompt.feed(data.decode(errors="replace"))
            if answer is not None:
                kind = self.fx.prompt_kind
                raises = {kind: answer.amount} if answer.choice == "raise" and kind and answer.amount else {}
                self._feed(Answer(answer.choice, "prompt", raises))
        elif master is not None:
            before, ctrl_z, after = data.partition(SUSPEND_KEY)
            if before:
                write_all(master, before)
            if ctrl_z:
                self._suspend()
                if after:
                    write_all(master, after)
        return True

    def _suspend(self) -> None:
        """Ctrl-Z: the agent leads a session of its own, where the kernel discards a terminal
        stop, so guard does what a shell would: freeze the tree, hand the terminal back and stop
        itself (SIGTSTP: without a job-control shell above guard the kernel discards it)."""
        assert self.fx.tree is not None and self.terminal is not None
        self.fx.tree.stop()
        self.terminal.restore()
        os.kill(os.getpid(), signal.SIGTSTP)
        self.terminal.raw()
        self.fx.tree.resume()
        self._repaint()

    def _repaint(self) -> None:
        """Full-screen agents redraw on a size change: nudge the PTY size and put it back."""
        if self.child is None or self.child.master_fd is None:
            return
        try:
            rows, cols = get_size(self.envr.stdin_fd)
            set_size(self.child.master_fd, rows, max(1, cols - 1))
            time.sleep(0.02)
            set_size(self.child.master_fd, rows, cols)
        except OSError:
            pass

    def _tty(self, text: str) -> None:
        if self.pump is None or not self.pump.say(text):  # in order with the agent's output
            write_all(self.envr.stdout_fd, text.encode())

    def _reap(self) -> None:
        reaper.reap_orphans({self.child.pid if self.child else -1, self.sentinel.pid if self.sentinel else -1})

    def _write_state(self) -> None:
        s = self.state
        self.fx.write_state(self.meter.totals.as_dict(), s.ceilings(time.time()), s.halt, s.phase == "paused")

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
        self.ledger.update_run(self.run_id, status="halted" if halted else "completed", exit_code=self.exit_code,
                               ended_at=time.time(), skipped_records=self.adapter.skipped_records())
        self._write_state()
        self.sink.close()
        for message in self.fx.shown:
            self.envr.say(message)
        if halted and self.state.halt is not None:
            t = self.meter.totals
            self.envr.say(f"{self.state.halt.message} (run {self.run_id}: ${t.cost_usd:.2f}, {t.tokens} tokens, "
                          f"{t.steps} steps)")
        skipped = self.adapter.skipped_records()
        if skipped:
            self.envr.say(f"skipped {skipped} unreadable usage record(s)")
        return int(ExitStatus.HALTED) if halted else (self.exit_code or 0)

    def _crashed(self) -> None:
        try:
            if self.fx.tree is not None:
                self.fx.tree.signal(signal.SIGKILL)
            self.ledger.update_run(self.run_id, status="crashed", ended_at=time.time())
        except Exception:  # noqa: BLE001 - already failing: keep the first error
            pass
