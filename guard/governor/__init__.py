"""The decision core: every ceiling, admission, notice, pause and stop of a run, decided by one
pure state machine (`decide`). The run loop only carries its actions out."""
from guard.governor.ceilings import TASK_CEILINGS, Ceiling, format_amount
from guard.governor.decide import decide
from guard.governor.state import OnLimit, RunState

__all__ = ["TASK_CEILINGS", "Ceiling", "OnLimit", "RunState", "decide", "format_amount"]
