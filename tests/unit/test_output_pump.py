"""The output pump against a real PTY and a real child."""
import os
import subprocess
import sys

from guard.supervisor.pump import OutputPump
from tests.helpers import wait_until


def test_pump_copies_everything_taps_it_and_keeps_guards_words_in_order(tmp_path):
    master, slave = os.openpty()
    os.set_blocking(master, False)
    out_r, out_w = os.pipe()
    tapped: list[bytes] = []
    ended: list[bool] = []
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdout.write('x' * 300000 + 'END'); sys.stdout.flush(); input()"],
                             stdout=slave, stderr=slave, stdin=slave)
    os.close(slave)
    pump = OutputPump(master, out_w, tapped.append, on_eof=lambda: ended.append(True))
    pump.start()
    got = bytearray()
    os.set_blocking(out_r, False)

    def drained() -> bool:
        try:
            got.extend(os.read(out_r, 1 << 16))
        except BlockingIOError:
            pass
        return got.endswith(b"END")

    wait_until(drained, timeout=20, message="all output")
    assert pump.say("guard: paused\r\n")
    os.write(master, b"\n")  # lets the child end
    child.wait()
    pump.finish()
    wait_until(lambda: ended, message="the end of output")
    while True:
        try:
            chunk = os.read(out_r, 1 << 16)
        except BlockingIOError:
            break
        if not chunk:
            break
        got.extend(chunk)
    assert bytes(got).startswith(b"x" * 1000)
    assert b"ENDguard: paused\r\n" in bytes(got)  # the child's echo of the newline may follow
    assert b"".join(tapped).count(b"x") == 300000
    assert not pump.say("too late")


def test_pump_sees_the_modes_a_killed_child_left_on():
    """A full-screen child killed before its own reset: the pump knows what to undo."""
    master, slave = os.openpty()
    os.set_blocking(master, False)
    out_r, out_w = os.pipe()
    script = ("import os, sys, time; w = sys.stdout.buffer; "
              "w.write(b'\\x1b[?1049h\\x1b[?25l'); w.flush(); time.sleep(0.05); "
              "w.write(b'\\x1b[?1000'); w.flush(); time.sleep(0.05); w.write(b'h\\x1b[?2004hREADY'); w.flush(); "
              "time.sleep(60)")
    child = subprocess.Popen([sys.executable, "-c", script], stdout=slave, stderr=slave, stdin=slave)
    os.close(slave)
    pump = OutputPump(master, out_w)
    pump.start()
    got = bytearray()
    os.set_blocking(out_r, False)

    def ready() -> bool:
        try:
            got.extend(os.read(out_r, 1 << 16))
        except BlockingIOError:
            pass
        return b"READY" in got

    wait_until(ready, timeout=20, message="the child's screen")
    child.kill()
    child.wait()
    pump.finish()
    seq = pump.modes.restore_sequence()
    assert seq == b"\x1b[?1000l\x1b[?2004l\x1b[?1049l\x1b[?25h"
    os.close(out_r)
