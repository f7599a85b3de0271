"""The decision core held for one run: events come in from any thread (the loop, the proxy's
request threads), decisions are taken one at a time under a lock, and the actions come out in
decision order -- request verdicts at once to the waiting request, the rest to the loop thread."""
from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

from guard.governor import RunState, decide
from guard.governor.events import Action, Event, Forward, Hold, Refuse
from guard.supervisor.desk import RequestDesk


class CoreLink:
    def __init__(self, state: RunState, desk: Callable[[Callable[[Event], None]], RequestDesk],
                 wake: Callable[[], None], clock: Callable[[], float] = time.time) -> None:
        self.state = state
        self.desk = desk(self.apply)
        self._wake = wake
        self._clock = clock
        self._lock = threading.Lock()
        self._todo: deque[Action] = deque()

    def apply(self, event: Event) -> None:
        with self._lock:
            self.state, actions = decide(self.state, event, self._clock())
            for a in actions:
                if isinstance(a, (Forward, Refuse, Hold)):
                    self.desk.resolve(a)
                else:
                    self._todo.append(a)
        if self._todo and threading.current_thread() is not threading.main_thread():
            self._wake()

    def take(self) -> list[Action]:
        """The loop thread's half: what is left to carry out, in decision order."""
        out = []
        while self._todo:
            out.append(self._todo.popleft())
        return out
