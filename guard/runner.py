"""One supervised run: admission, spawn, the event loop, halts, and the record of it all.

The loop is single-threaded: adapter threads only queue events (Sink) and wake it through a
pipe; PTY bytes, signals, controls from `guard stop/resume` and the time ceiling all arrive as
readable fds or timeouts of one `select`. Every decision is written to the ledger before it is
acted on.
"""
from __future__ import annotations

import json
import os
import select
import signal
import threading
import time
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from guard import admission, budgets
from guard.adapters.base import Adapter, LaunchContext, Remaining
from guard.config import Settings
from guard.environment import Environment
from guard.errors import ExitStatus, GuardError, Refused
from guard.governor import (
    TASK_CEILINGS,
    Ceiling,
    Decision,
    OnLimit,
    Policy,
    decide,
    format_amount,
    soft_message,
)
from guard.ledger import Ledger, reservations
from guard.ledger.records import Approval, Halt, RunRecord
from guard.meter import Meter
from guard.pricing import Pricer
from guard.proxy.gate import BudgetRefused
from guard.run_settings import budgets_enabled, identity_for, meter_mode
from guard.sink import Sink
from guard.supervisor.prompt import PausePrompt
from guard.supervisor.pump import OutputPump
from guard.supervisor.spawn import Child, spawn, start_sentinel
from guard.supervisor.terminal import Terminal, get_size, set_size, write_all
from guard.supervisor.tree import ProcessTree
from guard.usage import UsageEvent

SUSPEND_KEY = b"\x1a"      # Ctrl-Z
POLL_INTERVAL = 1.0        # safety-net read of the cost signals when no watcher woke us
CONTROL_INTERVAL = 0.5     # how often `guard stop/resume` rows are looked for without a signal
PERIOD_REFRESH = 5.0       # how often other runs' spend (developer/team ceilings) is re-read


@dataclass
class Stopper:
    """Walks the stop sequence, one signal per deadline, while the loop keeps copying output."""

    steps: list[tuple[int | None, float]]
    deadline: float = 0.0
    done: bool = False

    def due(self, now: float) -> bool:
        return not self.done and now >= self.deadline


@dataclass
class PeriodCeilings:
    """Developer/team/line ceilings of the current periods, as budgets computes them (`raw`,
    spend by other runs and their reservations) and as the governor sees them."""

    raw: list[budgets.Ceiling] = field(default_factory=list)
    ceilings: list[Ceiling] = field(default_factory=list)
    refreshed_at: float = 0.0


class _NoticeStream:
    """Lets budgets.notify_soft print through the run's notice channel (title bar on a TTY)."""

    def __init__(self, run: Run) -> None:
        self.run = run

    def write(self, text: str) -> int:
        if text.strip():
            self.run._show(text.strip().removeprefix("guard: "))
        return len(text)

    def flush(self) -> None:
        pass


class Run:
    def __init__(self, envr: Environment, settings: Settings, ledger: Ledger, adapter: Adapter,
                 tool: str, tool_args: list[str], wrapper_dirs: tuple[Path, ...] = ()) -> None:
        self.envr = envr
        self.settings = settings
        self.ledger = ledger
        self.adapter = adapter
        self.tool = tool
        self.tool_args = tool_args
        self.wrapper_dirs = wrapper_dirs
        self.run_id = uuid.uuid4().hex[:12]
        self.task: str = settings.task or self.run_id
        self.identity = identity_for(settings, envr, settings.task, tool)
        self.interactive = envr.interactive
        on_limit: OnLimit = settings.on_limit or ("pause" if self.interactive else "stop")
        self.policy = Policy(on_limit=on_limit, soft_fraction=settings.soft_threshold)
        from guard.pricing import load_overrides

        overrides = load_overrides(Path(settings.prices).expanduser()) if settings.prices else None
        self.pricer = Pricer(overrides, settings.unknown_price)
        self.meter = Meter(self.run_id, ledger, self.pricer)
        self.sink = Sink()
        self.started_at = time.time()
        self.run_dir = envr.home / "runs" / self.run_id
        self.state_path = self.run_dir / "state.json"
        self.child: Child | None = None
        self.tree: ProcessTree | None = None
        self.sentinel: Any = None
        self.terminal: Terminal | None = None
        self.halt: Halt | None = None           # the halt in force (None once resumed)
        self.halted = False                     # the run ended because guard halted it
        self.paused = False
        self.stopper: Stopper | None = None
        self.exit_code: int | None = None
        self.warned_notices: list[str] = []
        self.period = PeriodCeilings()
        self.reserved_usd = 0.0
        self.reserved_tokens = 0
        self._gate_lock = threading.Lock()
        self._pending_releases: list[tuple[float, int, str | None]] = []
        self.prompt = PausePrompt(self._tty)
        self._signals: list[int] = []
        self._last_poll = 0.0
        self._halted_at = 0.0
        self._last_control = 0.0
        self._last_state_write = 0.0
        self._state_dirty = False
        self.proxy: Any = None
        self.pump: OutputPump | None = None
        self.task_limits = admission.task_limits(settings, ledger, self.task, self.run_id)

    # -- admission -----------------------------------------------------------------------------

    def ceilings(self, now: float | None = None, extra_usd: float = 0.0, extra_tokens: int = 0) -> list[Ceiling]:
        now = time.time() if now is None else now
        t = self.meter.totals
        p = self.task_limits.prior
        used = {
            "usd": p.cost_usd + t.cost_usd + extra_usd,
            "tokens": p.tokens + t.tokens + extra_tokens,
            "steps": p.steps + t.steps,
            "time": self.task_limits.prior_seconds + (now - self.started_at),
        }
        out = [Ceiling(k, lim, used[k]) for k, lim in self.task_limits.limits.items()]
        for c in self.period.ceilings:
            out.append(Ceiling(c.name, c.limit, c.used + t.cost_usd + extra_usd, c.scope, c.resets_at))
        return out

    def remaining(self) -> Remaining:
        cs = {c.name: c for c in self.ceilings()}

        def left(name: str) -> float | None:
            return max(0.0, cs[name].limit - cs[name].used) if name in cs else None

        usd = [max(0.0, c.limit - c.used) for c in cs.values() if c.kind == "usd"]
        tokens, steps, seconds = left("tokens"), left("steps"), left("time")
        return Remaining(min(usd) if usd else None, int(tokens) if tokens is not None else None,
                         int(steps) if steps is not None else None, seconds)

    def _refresh_period(self, now: float) -> None:
        raw = budgets.period_ceilings(self.ledger, self.identity, self.settings, now,
                                      line=self.identity.line, exclude_run=self.run_id)
        self.period = PeriodCeilings(raw, [
            Ceiling(c.name, c.hard_limit, c.committed, c.scope.split(":", 1)[0], c.until) for c in raw], now)
        run_usd = self.meter.totals.cost_usd
        budgets.notify_soft(self.ledger, [replace(c, used=c.used + run_usd) for c in raw],
                            self.settings.notify, out=_NoticeStream(self), now=now, identity=self.identity)

    def _admit(self) -> None:
        halted = dict(self.ledger.task_halts(self.task)) if self.settings.task else {}
        halt = admission.refusal(self.ceilings(), self.period.raw, halted,
                                 self.task if self.settings.task else None, time.time())
        if halt is not None:
            self.ledger.create_run(self._record(status="refused", halt=halt, ended_at=time.time()))
            raise Refused(halt.message)

    def _record(self, **kw: Any) -> RunRecord:
        return RunRecord(
            id=self.run_id, tool=self.tool, task=self.task, developer=self.identity.developer,
            team=self.identity.team, machine=self.identity.machine, line=self.identity.line,
            started_at=self.started_at, cwd=str(self.envr.cwd), argv=self.tool_args,
            limits=self.task_limits.limits, guard_pid=os.getpid(), **kw)

    # -- the budget gate (used by the metering proxy before it forwards a request) --------------

    def reserve(self, usd: float, tokens: int) -> tuple[float, int, str | None]:
        """Admit a model call's worst case against every ceiling, or raise BudgetRefused.
        Developer/team/line ceilings are reserved in the ledger too, so guards on other
        machines see this call in flight."""
        with self._gate_lock:
            for c in self.ceilings(extra_usd=self.reserved_usd + usd,
                                   extra_tokens=self.reserved_tokens + tokens):
                if c.kind in ("usd", "tokens") and c.used > c.limit and c.name not in self.policy.lifted:
                    self._refuse(c, usd if c.kind == "usd" else tokens)
            shared = None
            if self.period.raw:
                run_usd = self.meter.totals.cost_usd + self.reserved_usd
                try:
                    shared = reservations.reserve(
                        self.ledger, [replace(c, used=c.used + run_usd) for c in self.period.raw],
                        usd, self.run_id)
                except GuardError as e:
                    self.sink.halt("developer_usd", str(e).removeprefix("refused: "))
                    raise BudgetRefused(str(e)) from None
            self.reserved_usd += usd
            self.reserved_tokens += tokens
            return (usd, tokens, shared)

    def _refuse(self, c: Ceiling, request: float) -> None:
        """A request that would cross a ceiling is not sent, and the run is at its ceiling:
        halt it the configured way (pause, stop, kill), as if the ceiling had been crossed."""
        spent = next(x.used for x in self.ceilings() if x.name == c.name)
        in_flight = self.reserved_usd if c.kind == "usd" else self.reserved_tokens
        message = (f"{c.describe_limit()} {c.scope} ceiling: the next request (up to "
                   f"{format_amount(c.kind, request)}) would exceed it "
                   f"({format_amount(c.kind, spent)} {'spent' if c.kind == 'usd' else 'used'}"
                   + (f", {format_amount(c.kind, in_flight)} in flight)" if in_flight else ")"))
        self.sink.halt(c.name, message)
        raise BudgetRefused(message)

    def release(self, reservation: object) -> None:
        """The proxy emits a call's event just before releasing its reservation; the hold stays
        until the loop has recorded that event, so the spend is never counted nowhere."""
        assert isinstance(reservation, tuple)
        with self._gate_lock:
            self._pending_releases.append(reservation)
        self.sink.wake()

    def _apply_releases(self, releases: list[tuple[float, int, str | None]]) -> None:
        for usd, tokens, shared in releases:
            self.reserved_usd -= usd
            self.reserved_tokens -= tokens
            if shared is not None:
                reservations.release(self.ledger, shared)

    # -- main ----------------------------------------------------------------------------------

    def execute(self) -> int:
        if budgets_enabled(self.settings):
            self._refresh_period(time.time())
        self._admit()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        env = dict(self.envr.env)
        rem = self.remaining()
        env.update(self._budget_env(rem))
        ctx = LaunchContext(
            run_id=self.run_id, tool_args=self.tool_args, env=env, run_dir=self.run_dir,
            state_path=self.state_path, cwd=self.envr.cwd, started_at=self.started_at,
            interactive=self.interactive, remaining=rem,
            options=dict(self.settings.get(self.tool) or {}), wrapper_dirs=self.wrapper_dirs,
            meter=meter_mode(self.settings.meter, self.tool))
        if ctx.meter == "proxy":
            self._start_proxy(ctx)
        launch = self.adapter.prepare(ctx)
        self.pricer.warm()
        self.ledger.create_run(self._record(status="running"))
        self._write_state()
        try:
            return self._supervise(launch.argv, launch.env)
        except BaseException:
            self._finish_crashed()
            raise

    def _budget_env(self, rem: Remaining) -> dict[str, str]:
        env = {"GUARD_RUN_ID": self.run_id}
        for name, value in (("USD", rem.usd), ("TOKENS", rem.tokens), ("STEPS", rem.steps),
                            ("SECONDS", rem.seconds)):
            if value is not None:
                env[f"GUARD_REMAINING_{name}"] = f"{value:.4f}" if name == "USD" else str(int(value))
        return env

    def _start_proxy(self, ctx: LaunchContext) -> None:
        from guard.proxy import start_proxy
        from guard.proxy.env import aider_upstream_env

        # forward to wherever the tool itself would have gone (aider: after its .env files)
        upstream = aider_upstream_env(ctx.env, ctx.cwd, ctx.tool_args) if self.tool == "aider" else ctx.env
        self.proxy = start_proxy(self.sink, self, self.pricer, upstream)
        ctx.env.update(self.proxy.client_env(self.tool))
        ctx.tool_args = ctx.tool_args + self.proxy.client_args(self.tool, ctx.tool_args)

    def _supervise(self, argv: list[str], env: dict[str, str]) -> int:
        from guard.supervisor.linux import become_subreaper

        become_subreaper()
        size = None
        if self.interactive:
            self.terminal = Terminal(self.envr.stdin_fd)
            try:
                size = get_size(self.envr.stdin_fd)
            except OSError:
                size = None
        old_handlers = self._install_signals()
        # watchers first: nothing the agent writes in its first milliseconds goes unseen
        self.adapter.start(self.sink)
        try:
            self.child = spawn(argv, env, str(self.envr.cwd), self.interactive, size)
            self.sentinel = start_sentinel(self.child.pid, self.run_id)
            self.tree = ProcessTree(self.child.pid, exclude=lambda: {self.sentinel.pid}, run_id=self.run_id)
            self.ledger.update_run(self.run_id, agent_pid=self.child.pid)
            if self.terminal is not None:
                self.terminal.raw()
            self._loop()
        finally:
            if self.terminal is not None:
                self.terminal.restore()
            self._restore_signals(old_handlers)
        return self._finish()

    # -- signals -------------------------------------------------------------------------------

    def _install_signals(self) -> dict[int, Any]:
        self._sig_r, self._sig_w = os.pipe()
        os.set_blocking(self._sig_r, False)
        os.set_blocking(self._sig_w, False)
        self._old_wakeup = signal.set_wakeup_fd(self._sig_w)
        old: dict[int, Any] = {}
        for sig in (signal.SIGCHLD, signal.SIGWINCH, signal.SIGUSR1, signal.SIGTERM, signal.SIGHUP,
                    signal.SIGINT, signal.SIGQUIT):
            old[sig] = signal.signal(sig, self._on_signal)
        return old

    def _on_signal(self, signum: int, _frame: Any) -> None:
        self._signals.append(signum)

    def _restore_signals(self, old: dict[int, Any]) -> None:
        for sig, handler in old.items():
            signal.signal(sig, handler)
        signal.set_wakeup_fd(self._old_wakeup)
        for fd in (self._sig_r, self._sig_w):
            os.close(fd)

    def _handle_signals(self) -> None:
        try:
            while os.read(self._sig_r, 4096):
                pass
        except BlockingIOError:
            pass
        sigs, self._signals = self._signals, []
        for sig in sigs:
            if sig == signal.SIGWINCH and self.child and self.child.master_fd is not None:
                try:
                    set_size(self.child.master_fd, *get_size(self.envr.stdin_fd))
                except OSError:
                    pass
            elif sig == signal.SIGUSR1:
                self._apply_controls()
            elif sig == signal.SIGCHLD:
                self._reap_orphans()
            elif sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT, signal.SIGQUIT):
                # guard is asked to end: pass it on to the agent and keep supervising its exit
                if self.tree is not None:
                    if self.paused:
                        self.tree.resume()
                    self.tree.signal(sig)

    # -- the loop ------------------------------------------------------------------------------

    def _loop(self) -> None:
        assert self.child is not None
        master = self.child.master_fd
        if master is not None:
            self.pump = OutputPump(master, self.envr.stdout_fd, getattr(self.adapter, "feed_output", None),
                                   on_eof=self.sink.wake)
            self.pump.start()
        stdin_open = self.interactive
        while True:
            rfds = [self.sink.read_fd, self._sig_r]
            if stdin_open:
                rfds.append(self.envr.stdin_fd)
            try:
                ready, _, _ = select.select(rfds, [], [], self._timeout())
            except InterruptedError:
                ready = []
            if self._sig_r in ready or self._signals:
                self._handle_signals()
            if stdin_open and self.envr.stdin_fd in ready:
                stdin_open = self._copy_in(master)
            self._tick()
            if self._child_exited():
                break
        if self.pump is not None:
            self.pump.finish()
        try:
            self.adapter.close()
        except Exception as e:  # noqa: BLE001 - the agent is gone; say what may be missing
            self.sink.notice("adapter-close", f"the {self.tool} adapter failed reading the last records "
                                              f"({type(e).__name__}: {e}); this run's usage may be incomplete")
        self._process_sink()
        self._halt_if_crossed_at_exit()
        self._sweep_leftovers()

    def _halt_if_crossed_at_exit(self) -> None:
        """An agent that stops itself at the ceiling (its own inner fence, or the last records
        arrived as it exited) was still halted by a ceiling: record it as such."""
        if self.halt is not None or self.halted:
            return
        decision = decide(self.ceilings(), self.policy)
        if decision.ceiling is not None:
            c = decision.ceiling
            self.halt = Halt(c.name, c.limit, round(c.used, 6), "stop",
                             decision.halt_message(self.meter.totals.steps + self.task_limits.prior.steps))
            self.halted = True
            self.ledger.update_run(self.run_id, status="halted", halt=self.halt)
            if self.settings.task and c.name in TASK_CEILINGS:
                self.ledger.mark_task_halted(self.task, c.name, self.run_id)

    def _timeout(self) -> float:
        t = 0.25
        if self.stopper and not self.stopper.done:
            t = min(t, max(0.0, self.stopper.deadline - time.monotonic()))
        time_ceiling = self.task_limits.limits.get("time")
        if time_ceiling and "time" not in self.policy.lifted and not self.paused:
            left = time_ceiling - (self.task_limits.prior_seconds + time.time() - self.started_at)
            t = min(t, max(0.0, left + 0.001))
        return t

    def _copy_in(self, master: int | None) -> bool:
        try:
            data = os.read(self.envr.stdin_fd, 1 << 14)
        except OSError:
            return False
        if not data:
            return False
        if self.paused and self.interactive:
            self._prompt_input(data.decode(errors="replace"))
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
        itself. `fg` continues guard, which takes the terminal again and wakes the agent.
        SIGTSTP, not SIGSTOP: without a job-control shell above guard the kernel discards it,
        so guard never stops where nobody could continue it."""
        assert self.tree is not None and self.terminal is not None
        self.tree.stop()
        self.terminal.restore()
        os.kill(os.getpid(), signal.SIGTSTP)
        self.terminal.raw()
        self.tree.resume()
        self._repaint()

    def _tick(self) -> None:
        mono = time.monotonic()
        if mono - self._last_poll >= POLL_INTERVAL:
            self._last_poll = mono
            self._poll_adapter()
        if mono - self._last_control >= CONTROL_INTERVAL:
            self._last_control = mono
            self._apply_controls()
        if self.period.ceilings and time.time() - self.period.refreshed_at >= PERIOD_REFRESH:
            self._refresh_period(time.time())
        self._process_sink()
        self._evaluate()
        if self.stopper and self.stopper.due(mono):
            self._advance_stopper()
        if self._state_dirty and mono - self._last_state_write >= 0.05:
            self._write_state()

    def _poll_adapter(self) -> None:
        """Fail closed: an adapter that can no longer read the cost signal halts the run the
        configured way (a pause lets the developer decide), it never means "unlimited"."""
        try:
            self.adapter.poll()
        except Exception as e:  # noqa: BLE001 - any failure blinds the meter
            if self.halt is None and not self.halted:
                step = self.meter.totals.steps + self.task_limits.prior.steps
                self._halt(Halt("adapter_error", 0, 0, self.policy.on_limit,
                                f"halted at step {step}: the {self.tool} adapter failed "
                                f"({type(e).__name__}: {e}); spend can no longer be metered"))

    def _child_exited(self) -> bool:
        assert self.child is not None
        code = self.child.popen.poll()
        if code is None:
            return False
        self.exit_code = code if code >= 0 else 128 - code
        return True

    def _reap_orphans(self) -> None:
        """guard is a subreaper: adopted descendants become its zombies; bury them."""
        try:
            import psutil

            for p in psutil.Process().children():
                if p.pid in (self.child.pid if self.child else -1, self.sentinel.pid if self.sentinel else -1):
                    continue
                try:
                    if p.status() == psutil.STATUS_ZOMBIE:
                        os.waitpid(p.pid, os.WNOHANG)
                except (psutil.Error, ChildProcessError):
                    pass
        except Exception:
            pass

    # -- events and decisions -----------------------------------------------------------------

    def _process_sink(self) -> None:
        with self._gate_lock:
            releases, self._pending_releases = self._pending_releases, []
        events, notices, halts, accuracy = self.sink.take()  # every released call's event is here
        recorded = []
        if events or releases:
            with self._gate_lock:
                if events:
                    recorded = self.meter.record_batch(events)
                self._apply_releases(releases)
        if events:
            if (self.halted and self.stopper and not self.stopper.done and self.stopper.steps
                    and any(r.new for r in recorded) and time.monotonic() - self._halted_at > 1.0):
                # new calls a while after being told to stop (not a response that was already in
                # flight, nor a second source's copy of one): it is not winding down, escalate now
                self._advance_stopper()
            for ev in events:
                merged, price = self.meter.calls[ev.key]
                if not price.known:
                    self._unknown_price(merged)
            self._state_dirty = True
        for key, message in notices:
            if self.ledger.add_notice(self.run_id, key, message):
                self._show(message)
        if accuracy is not None:
            self.ledger.update_run(self.run_id, accuracy=accuracy)
        for ceiling, message in halts:
            if self.halt is None and not self.halted:
                current = {c.name: c for c in self.ceilings()}.get(ceiling)
                step = self.meter.totals.steps + self.task_limits.prior.steps
                self._halt(Halt(ceiling, current.limit if current else 0,
                                round(current.used, 6) if current else 0, self.policy.on_limit,
                                f"halted at step {step}: {message}"))

    def _unknown_price(self, ev: UsageEvent) -> None:
        if self.pricer.unknown == "refuse":
            if self.halt is None and not self.halted:
                msg = (f"halted at step {self.meter.totals.steps}: no price known for model "
                       f"{ev.model!r} (unknown_price: refuse; add it to a prices file)")
                self._halt(Halt("unknown_price", 0, 0, "stop", msg), action="stop")
            return
        key = f"unknown-price:{ev.model}"
        msg = (f"no price known for model {ev.model!r}: counting it at the most expensive "
               f"{ev.model and ev.model.split('-')[0] or 'known'} price ({self.meter.calls[ev.key][1].basis}); "
               "set its price in a prices file")
        if self.ledger.add_notice(self.run_id, key, msg):
            self._show(msg)

    def _evaluate(self) -> None:
        if self.halt is not None or self.halted:
            return
        decision = decide(self.ceilings(), self.policy)
        for c in decision.warnings:
            self.policy.warned.add(c.name)
            msg = soft_message(c)
            if self.ledger.add_notice(self.run_id, f"soft:{c.name}", msg):
                self._show("warning: " + msg)
        if decision.ceiling is not None:
            self._halt_for(decision)

    def _halt_for(self, decision: Decision) -> None:
        c = decision.ceiling
        assert c is not None
        message = decision.halt_message(self.meter.totals.steps + self.task_limits.prior.steps)
        self._halt(Halt(c.name, c.limit, round(c.used, 6), decision.action, message))

    def _halt(self, halt: Halt, action: str | None = None) -> None:
        """Record first, then act."""
        action = action or halt.action
        halt.action = action
        self.halt = halt
        self.ledger.update_run(self.run_id, status="paused" if action == "pause" else "halted", halt=halt)
        if self.settings.task and halt.ceiling in TASK_CEILINGS:
            self.ledger.mark_task_halted(self.task, halt.ceiling, self.run_id)
        self._write_state()
        if action == "pause":
            self._pause()
            return
        self._begin_stop(halt.message, kill=action == "kill")

    def _begin_stop(self, message: str, kill: bool = False) -> None:
        """The run ends here: no request leaves the proxy, the tool is told why, then signals."""
        self.halted = True
        self._halted_at = time.monotonic()
        if self.proxy is not None:
            self.proxy.refuse_all(message)
        self.adapter.on_halt(message)
        self._stop(kill=kill)

    def _stop(self, kill: bool = False) -> None:
        assert self.tree is not None
        if self.paused:
            self.paused = False
            self.tree.resume()
        if kill:
            self.stopper = Stopper([(signal.SIGKILL, 0.5)])
        else:
            steps: list[tuple[int | None, float]] = []
            if self.adapter.has_graceful_stop:
                steps.append((None, float(self.settings.grace)))
            steps += [(int(sig), grace) for sig, grace in self.adapter.stop_sequence()]
            self.stopper = Stopper(steps)
        self._advance_stopper()

    def _advance_stopper(self) -> None:
        assert self.stopper is not None and self.tree is not None
        if not self.stopper.steps:
            self.stopper.done = True
            return
        sig, grace = self.stopper.steps.pop(0)
        if sig is not None:
            self.tree.signal(sig)
        self.stopper.deadline = time.monotonic() + grace

    def _sweep_leftovers(self) -> None:
        """Nothing the agent started may go on spending after guard is gone."""
        if self.tree is None:
            return
        left = self.tree.members()
        if not left:
            return
        self.tree.signal(signal.SIGCONT)
        self.tree.signal(signal.SIGTERM)
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline and self.tree.members():
            time.sleep(0.02)
            self._reap_orphans()
        if self.tree.members():
            self.tree.signal(signal.SIGKILL)
            deadline = time.monotonic() + 2.0
            while time.monotonic() < deadline and self.tree.members():
                time.sleep(0.02)
                self._reap_orphans()

    # -- pause, prompt, controls --------------------------------------------------------------

    def _pause(self) -> None:
        assert self.tree is not None and self.halt is not None
        self.tree.stop()
        self.paused = True
        if self.interactive:
            raisable = self.halt.ceiling in TASK_CEILINGS or self.halt.ceiling.endswith("_usd")
            self.prompt.open(self.halt.message, self._raise_kind() if raisable else None)
        else:
            self._show(f"paused: {self.halt.message}; resume with `guard resume {self.run_id} "
                       f"--raise-{self.halt.ceiling if self.halt.ceiling in TASK_CEILINGS else 'usd'} AMOUNT`, "
                       f"`guard resume {self.run_id}` to continue past it, or `guard stop {self.run_id}`")

    def _tty(self, text: str) -> None:
        if self.pump is None or not self.pump.say(text):  # in order with the agent's output
            write_all(self.envr.stdout_fd, text.encode())

    def _prompt_input(self, text: str) -> None:
        answer = self.prompt.feed(text)
        if answer is not None:
            self._resolve_pause(answer.choice, answer.amount, "prompt")

    def _raise_kind(self) -> str:
        assert self.halt is not None
        return self.halt.ceiling if self.halt.ceiling in TASK_CEILINGS else "usd"

    def _resolve_pause(self, choice: str, amount: float | None, by: str,
                       raises: dict[str, float] | None = None) -> None:
        """Apply the answer to a pause, from the prompt or from `guard resume/stop`."""
        if self.halt is None:
            return
        who = f"{self.identity.developer} ({by})"
        if choice == "stop":
            self.paused_prompt_done()
            self.halt.action = "stop"
            self.ledger.update_run(self.run_id, status="halted", halt=self.halt)
            self._begin_stop(self.halt.message)
            return
        raises = dict(raises or {})
        if choice == "raise" and amount is not None:
            raises[self._raise_kind()] = amount
        period = next((c for c in self.period.raw if c.name == self.halt.ceiling), None)
        if period is not None and "usd" in raises:
            # a developer/team/line ceiling is raised by a grant for its current period
            budgets.grant(self.ledger, period.scope, raises.pop("usd"), who,
                          f"raised while run {self.run_id} was paused", period=period.period)
            self._refresh_period(time.time())
        for kind, value in raises.items():
            self.ledger.add_approval(Approval(self.run_id, self.task, kind, value, who, ts=time.time()))
            if kind in self.task_limits.limits:
                self.task_limits.limits[kind] += value
            else:
                self.task_limits.limits[kind] = value + (self.halt.used if self.halt.ceiling == kind else 0)
        if choice == "continue" or (not raises and period is None):
            self.policy.lifted.add(self.halt.ceiling)
            self.ledger.add_approval(Approval(self.run_id, self.task, self.halt.ceiling, None, who,
                                              reason="continue past the ceiling for this run",
                                              ts=time.time()))
        self.ledger.update_run(self.run_id, status="running", halt=None, limits=self.task_limits.limits)
        self.halt = None
        self.paused_prompt_done()
        self._write_state()
        assert self.tree is not None
        self.tree.resume()
        self._repaint()
        self._evaluate()  # a raise too small pauses again at once

    def paused_prompt_done(self) -> None:
        self.paused = False

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

    def _apply_controls(self) -> None:
        for control in self.ledger.take_controls(self.run_id):
            by = control.payload.get("by", "guard resume")
            if control.action == "stop":
                if self.halt is not None and self.paused:
                    self._resolve_pause("stop", None, by)
                elif not self.halted:
                    self._halt(Halt("manual", 0, 0, "stop", f"stopped by {by}"), action="stop")
            elif control.action == "resume" and self.paused:
                raises = {k: float(v) for k, v in control.payload.get("raise", {}).items()}
                self._resolve_pause("raise" if raises else "continue", None, by, raises)
            elif control.action == "resume":
                # a raise for a running run still counts for the task
                for kind, value in control.payload.get("raise", {}).items():
                    self.ledger.add_approval(Approval(self.run_id, self.task, kind, float(value), by,
                                                      ts=time.time()))
                    if kind in self.task_limits.limits:
                        self.task_limits.limits[kind] += float(value)

    # -- output to the developer ---------------------------------------------------------------

    def _show(self, message: str) -> None:
        """A notice that must not corrupt a full-screen agent: on a terminal it goes to the
        window title and is repeated after the run; on pipes it is a plain stderr line."""
        if self.interactive:
            self.warned_notices.append(message)
            self._tty(f"\x1b]2;guard: {message}\x07")
        else:
            self.envr.say(message)

    def _write_state(self) -> None:
        self._state_dirty = False
        self._last_state_write = time.monotonic()
        t = self.meter.totals
        state = {
            "run_id": self.run_id,
            "task": self.task,
            "totals": t.as_dict(),
            "ceilings": [{"name": c.name, "limit": c.limit, "used": round(c.used, 6), "scope": c.scope}
                         for c in self.ceilings()],
            # while paused the agent is frozen; once halted, hooks must refuse every tool call
            "halt": {"ceiling": self.halt.ceiling, "message": self.halt.message}
            if self.halt is not None and not self.paused else None,
            "paused": self.paused,
            "updated_at": time.time(),
        }
        tmp = self.state_path.with_suffix(".tmp")
        try:
            tmp.write_text(json.dumps(state))
            os.replace(tmp, self.state_path)
        except OSError:
            pass

    # -- the end -------------------------------------------------------------------------------

    def _finish(self) -> int:
        if self.proxy is not None:
            self.proxy.stop()
            self._process_sink()
        if self.sentinel is not None:
            try:
                self.sentinel.stdin.write(b"done\n")
                self.sentinel.stdin.close()
            except OSError:
                pass
            self.sentinel.wait()
        if self.period.raw:
            reservations.release_run(self.ledger, self.run_id)
        status = "halted" if self.halted else "completed"
        code = int(ExitStatus.HALTED) if self.halted else (self.exit_code or 0)
        self.ledger.update_run(self.run_id, status=status, exit_code=self.exit_code,
                               ended_at=time.time(), skipped_records=self.adapter.skipped_records())
        self._write_state()
        self.sink.close()
        for message in self.warned_notices:
            self.envr.say(message)
        if self.halted and self.halt is not None:
            self.envr.say(f"{self.halt.message} ({self._spent_summary()})")
        skipped = self.adapter.skipped_records()
        if skipped:
            self.envr.say(f"skipped {skipped} unreadable usage record(s)")
        return code

    def _spent_summary(self) -> str:
        t = self.meter.totals
        return f"run {self.run_id}: ${t.cost_usd:.2f}, {t.tokens} tokens, {t.steps} steps"

    def _finish_crashed(self) -> None:
        try:
            if self.tree is not None:
                self.tree.signal(signal.SIGKILL)
            self.ledger.update_run(self.run_id, status="crashed", ended_at=time.time())
        except Exception:
            pass
