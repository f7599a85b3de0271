"""What the decision core hears (events) and what it asks the host to do (actions).

Plain frozen records, no behaviour: the vocabulary of `decide(state, event, now)`."""
from __future__ import annotations

from dataclasses import dataclass, field

from guard.ledger.records import Halt
from guard.usage import Totals

# -- events ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tick:
    """Time passed (the time ceiling, a stop step's deadline)."""


@dataclass(frozen=True)
class Spent:
    """The meter recorded a batch: the run's new totals. `new_calls` counts calls seen for the
    first time (a second source's copy of a known call is not new)."""

    totals: Totals
    new_calls: int = 0
    estimated: bool = False


@dataclass(frozen=True)
class Budget:
    """A developer/team/line ceiling of the current period, as the ledger has it: `others` is
    what other runs spent and hold in flight (this run's own spend is the state's)."""

    name: str            # developer_usd | team_usd | line_usd
    scope: str           # developer:alice | team:core | line:infra
    period: str          # day | week | month
    limit: float         # the hard limit, grants included
    others: float
    since: float
    resets_at: float
    soft: tuple[float, ...] = (0.75,)
    reset_words: str = ""   # "resets in 5h (Tue 00:00 UTC)"

    @property
    def until(self) -> float:
        """The ledger's name for the period's end (guard.ledger.reservations reserves against it)."""
        return self.resets_at


@dataclass(frozen=True)
class Budgets:
    """Other runs' shared spend, re-read from the ledger just before a decision needs it."""

    budgets: tuple[Budget, ...]


@dataclass(frozen=True)
class AdapterFailed:
    message: str


@dataclass(frozen=True)
class AdapterHalt:
    """The adapter saw something that must stop the run (a stuck loop)."""

    ceiling: str
    message: str


@dataclass(frozen=True)
class LedgerUnreachable:
    """The shared ledger cannot give a figure a ceiling needs: the offline policy's rule
    (guard.governor.offline) gave none."""

    message: str


@dataclass(frozen=True)
class ToolCall:
    """The agent asked for a tool call (seen in a transcript or on the wire); the core decides
    whether calls like it make a stuck loop (guard.governor.stuck)."""

    stream: str              # one conversation: the main loop, or a sub-agent
    call_id: str             # the same id reported twice is one call
    signature: str           # what the call does (the tool and its input, canonical)
    description: str         # how to name it to a person
    command: bool = False    # a shell command: its failures count towards `failing`


@dataclass(frozen=True)
class ToolResult:
    call_id: str
    is_error: bool


@dataclass(frozen=True)
class PriceUnknown:
    model: str | None
    basis: str


@dataclass(frozen=True)
class RequestCost:
    """A proxied request's worst case, priced by the host (pricing is not the core's job).
    `usd = input_usd + output_tokens * usd_per_output`; the allowance is linear in it."""

    input_tokens: int
    input_usd: float
    usd_per_output: float
    max_output: int
    thinking_budget: int | None = None
    step: bool = False             # the request itself is a step (aider's main model, `run`)


@dataclass(frozen=True)
class Admit:
    request_id: str
    cost: RequestCost


@dataclass(frozen=True)
class Settled:
    """A forwarded request ended; its usage (if any) is already in a Spent before this."""

    request_id: str


@dataclass(frozen=True)
class SharedRefused:
    """The ledger's atomic reservation of a developer/team/line ceiling failed (another
    machine got there first)."""

    request_id: str
    message: str


@dataclass(frozen=True)
class ClientGone:
    """A held request's client hung up (its own timeout): drop it, never send it."""

    request_id: str


@dataclass(frozen=True)
class Answer:
    """The answer to a pause: from the prompt or `guard resume/stop` in another shell."""

    choice: str                       # raise | continue | stop
    by: str
    raises: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class StopAsked:
    by: str


@dataclass(frozen=True)
class Exited:
    code: int


Event = (Tick | Spent | Budgets | AdapterFailed | AdapterHalt | LedgerUnreachable | ToolCall | ToolResult | PriceUnknown | Admit
         | Settled | SharedRefused | ClientGone | Answer | StopAsked | Exited)

# -- actions --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Notify:
    """Tell the developer once. `shared` (scope, period, since, threshold) makes it once per
    period across runs and machines, with the team's webhook/command."""

    key: str
    message: str
    soft: bool = False
    shared: tuple[str, str, float, float] | None = None


@dataclass(frozen=True)
class RecordHalt:
    """Written to the ledger before anything acts on it."""

    halt: Halt
    status: str                 # paused | halted
    task_halt: bool = False     # a named task stays halted until its ceiling is raised


@dataclass(frozen=True)
class Freeze:
    """SIGSTOP the whole tree."""


@dataclass(frozen=True)
class Thaw:
    """SIGCONT the tree, and nudge a full-screen agent to repaint."""


@dataclass(frozen=True)
class AskUser:
    message: str
    raise_kind: str | None      # what `[r]aise` raises, None when nothing can be raised
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class WindDown:
    """No request leaves the proxy from now on; hooks refuse the next tool call."""

    message: str


@dataclass(frozen=True)
class Signal:
    signum: int


@dataclass(frozen=True)
class Forward:
    """Send the request, with its output allowance lowered to `max_output` when set."""

    request_id: str
    max_output: int | None = None
    thinking_budget: int | None = None
    shared_usd: float = 0.0      # reserve this in the ledger first (period ceilings)
    lowered_from: int | None = None


@dataclass(frozen=True)
class Refuse:
    request_id: str
    message: str


@dataclass(frozen=True)
class Hold:
    """Keep the request waiting (not answered) while the run is paused."""

    request_id: str


@dataclass(frozen=True)
class Approve:
    kind: str
    amount: float | None        # None: continue past the ceiling for this run
    by: str
    reason: str = ""


@dataclass(frozen=True)
class Grant:
    scope: str
    period: str
    usd: float
    by: str
    reason: str


@dataclass(frozen=True)
class Resumed:
    limits: dict[str, float]


@dataclass(frozen=True)
class MarkEstimated:
    """Some call's usage did not come from the provider."""


Action = (Notify | RecordHalt | Freeze | Thaw | AskUser | WindDown | Signal | Forward | Refuse | Hold
          | Approve | Grant | Resumed | MarkEstimated)
