"""What a ceiling counts while the shared ledger is unreachable: the `offline` policy's rule.
Pure: the ledger gives the facts it holds (the last figure read from the server, this machine's
own spend since) and applies the answer; it decides nothing itself."""
from __future__ import annotations

from guard.usage import Totals

POLICIES = ("last-known", "refuse", "allow")


def offline_figure(policy: str, last_known: Totals | None, local: Totals, shared: bool = True) -> Totals | str:
    """The figure to enforce a ceiling with, or why there is none (the run then halts).

    For a shared ceiling (developer, team, line): last-known: the last shared figure plus what this
    machine spent since (never read here: none, fail closed); allow: the same, an unknown figure
    counting as 0; refuse: no shared figure at all. A task's own figure (`shared=False`) is the
    last one known plus this machine's, or this machine's alone when the task was never read here:
    a new task during an outage starts."""
    if not shared:
        return last_known.plus(local) if last_known is not None else local
    if policy == "refuse":
        return "the offline policy is refuse: no new spend is admitted"
    if last_known is None:
        return local if policy == "allow" else "this period's spend was never read on this machine"
    return last_known.plus(local)
