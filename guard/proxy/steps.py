"""Which requests count as steps on the wire, per tool, so that the count on the wire equals the
count in the ledger and a step ceiling lets no request past it:

- `run`: every model call;
- Codex: every response (its rollout counts one per response too);
- aider: main-model calls, not its weak model's commit messages and history summaries, nor
  cache keep-alive pings (max_tokens 1);
- Claude Code: none here. Its steps are tool calls, counted from responses (transcripts).
"""
from __future__ import annotations

from guard.proxy.wire import Estimate

_AIDER_NOT_STEPS = (b"generates concise, one-line Git commit messages", b"*Briefly* summarize this")


def is_step(tool: str, est: Estimate, body: bytes) -> bool:
    if tool in ("run", "codex"):
        return True
    if tool == "aider":
        return est.max_output_tokens > 1 and not any(m in body for m in _AIDER_NOT_STEPS)
    return False
