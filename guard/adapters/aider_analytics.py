"""aider's analytics log (`--analytics-log` / AIDER_ANALYTICS_LOG) -> UsageEvents.

aider appends one JSON object per event, even with analytics turned off. Two matter here:
`message_send_starting` when a main-model call begins and `message_send` (prompt_tokens,
completion_tokens, cost, total_cost) when its reply has been counted. A start with no `message_send`
before the next start, the `exit` event or the end of the process is a call that was interrupted,
killed or failed: the provider may still bill it, so it is recorded as such.

Every call gets the key `aider:call:<n>`, n counting starts in this run. The start is reported at
once as a step (so a step ceiling stops the call that would exceed it as it begins) with
interrupted=True: that is the truth until its end is seen, and the end's report, merged over it by
the meter, clears the flag (UsageEvent.merge ANDs it). Pure: fed records, returns events.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from guard.usage import UsageEvent

SOURCE = "aider_analytics"


@dataclass(frozen=True)
class Reply:
    """One counted main-model reply, as aider logged it (index = order of replies in the run)."""

    call: int
    prompt_tokens: int
    completion_tokens: int
    cost: float
    total_cost: float


def _num(props: dict[str, Any], name: str) -> float:
    v = props.get(name)
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return 0.0
    return max(0.0, float(v))


class AnalyticsTracker:
    def __init__(self, model: str | None = None, estimated: bool = True) -> None:
        """model: what guard knows of the main model (aider redacts names it has no data on).
        estimated: aider's counts are its own (streaming mode) rather than the provider's."""
        self.model = model
        self.estimated = estimated
        self.records = 0            # any record at all: the log is live
        self.calls = 0              # starts seen
        self.open_call: int | None = None
        self.replies: list[Reply] = []
        self.interrupted: list[int] = []
        self.exited = False
        self._last: Reply | None = None

    @property
    def live(self) -> bool:
        return self.records > 0

    def key(self, call: int) -> str:
        return f"aider:call:{call}"

    def on_record(self, obj: dict[str, Any], ts: float | None = None) -> list[UsageEvent]:
        self.records += 1
        name = obj.get("event")
        props = obj.get("properties")
        if not isinstance(props, dict):
            props = {}
        now = ts if ts is not None else time.time()
        out: list[UsageEvent] = []
        if name == "message_send_starting":
            out += self._close_open(now)
            self.calls += 1
            self.open_call = self.calls
            out.append(UsageEvent(
                key=self.key(self.calls), source=SOURCE, model=self.model, steps=1,
                estimated=True, interrupted=True, ts=now,
            ))
        elif name == "message_send":
            out += self._on_send(props, now)
        elif name == "exit":
            self.exited = True
            out += self._close_open(now)
        return out

    def finish(self, ts: float | None = None) -> list[UsageEvent]:
        """The process has ended: a call still open never finished."""
        return self._close_open(ts if ts is not None else time.time())

    # -------------------------------------------------------------------------------------

    def _model(self, props: dict[str, Any]) -> str | None:
        name = props.get("main_model")
        if isinstance(name, str) and name and "REDACTED" not in name and name != "None":
            return name
        return self.model

    def _on_send(self, props: dict[str, Any], now: float) -> list[UsageEvent]:
        call = self.open_call
        if call is None:
            # a send with no start (the log was joined late, or a format change): still a call
            self.calls += 1
            call = self.calls
        self.open_call = None
        prompt = int(_num(props, "prompt_tokens"))
        completion = int(_num(props, "completion_tokens"))
        cost = _num(props, "cost")
        reply = Reply(call, prompt, completion, cost, _num(props, "total_cost"))
        self.replies.append(reply)
        if prompt:
            self._last = reply
        model = self._model(props)
        return [UsageEvent(
            key=self.key(call), source=SOURCE, model=model,
            # aider's prompt count includes cached tokens and cache writes: it cannot be split
            # from this log, and the stated cost already prices them right.
            input_tokens=prompt, output_tokens=completion,
            # cost 0 = aider has no price for the model, not "free": guard prices the tokens
            cost_usd=cost if cost > 0 else None,
            steps=1, estimated=self.estimated, interrupted=False, ts=now,
        )]

    def _close_open(self, now: float) -> list[UsageEvent]:
        call = self.open_call
        if call is None:
            return []
        self.open_call = None
        self.interrupted.append(call)
        # What is known of a cut call: it re-sent about the conversation of the last counted one
        # (its input); its output is unknown. aider's price of that input, when it has one, is
        # the last call's cost shared out by tokens (a lower bound when output costs more).
        last = self._last
        prompt = last.prompt_tokens if last else 0
        cost = None
        if last is not None and last.cost > 0:
            cost = last.cost * last.prompt_tokens / max(1, last.prompt_tokens + last.completion_tokens)
        return [UsageEvent(
            key=self.key(call), source=SOURCE, model=self.model, input_tokens=prompt,
            cost_usd=cost, steps=1, estimated=True, interrupted=True, ts=now,
        )]
