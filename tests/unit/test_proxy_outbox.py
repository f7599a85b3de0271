"""The proxy hands its usage to the run in batches: a request's end never reaches the run
before its event, nothing is left behind at stop, and the run is woken once per batch."""
import os

from guard.proxy.server import _Outbox
from guard.sink import Sink
from guard.usage import UsageEvent
from tests.helpers import wait_until


def ev(key: str) -> UsageEvent:
    return UsageEvent(key=key, source="proxy", model="claude-sonnet-4-5", input_tokens=1)


class Gate:
    def __init__(self, sink: Sink, log: list) -> None:
        self.sink, self.log = sink, log

    def settle(self, handle: object) -> None:
        # what the run would see at this moment: the events already in the mailbox
        self.log.append((handle, [e.key for e in self.sink.events]))
        self.sink.settle((str(handle), None))


def test_events_reach_the_run_before_the_request_ends_that_follow_them():
    sink, log = Sink(), []
    box = _Outbox(sink, Gate(sink, log))
    box.emit(ev("a"))
    box.settle("ra")
    box.emit(ev("b"))
    box.settle("rb")
    wait_until(lambda: len(log) == 2, message="both requests ended")
    assert log == [("ra", ["a"]), ("rb", ["a", "b"])]
    mail = sink.take()
    assert [e.key for e in mail.events] == ["a", "b"] and [r for r, _ in mail.settles] == ["ra", "rb"]
    box.close()


def test_close_hands_over_what_is_left_and_later_items_at_once():
    sink, log = Sink(), []
    box = _Outbox(sink, Gate(sink, log))
    box.close()
    box.emit(ev("late"))
    box.settle("r")
    assert [e.key for e in sink.take().events] == ["late"] and log == [("r", ["late"])]


def test_the_run_is_woken_by_one_byte_per_batch_and_again_after_it_took_it():
    sink = Sink()
    for i in range(50):
        sink.emit(ev(str(i)))
    assert len(os.read(sink.read_fd, 4096)) == 1
    os.write(sink.write_fd, b"!")   # take() drains whatever is there
    assert len(sink.take().events) == 50
    sink.emit(ev("next"))
    assert os.read(sink.read_fd, 4096) == b"!"
    sink.close()
