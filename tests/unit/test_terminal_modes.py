"""The mode tracker: what an agent's output turned on, and exactly what restores it."""
from __future__ import annotations

import pytest

from guard.supervisor.modes import TITLE_POP, TITLE_PUSH, ModeTracker


def fed(*chunks: bytes) -> ModeTracker:
    t = ModeTracker()
    for c in chunks:
        t.feed(c)
    return t


def test_nothing_set_restores_nothing() -> None:
    assert fed(b"plain text \x1b[31mred\x1b[0m \x1b[2J\x1b[H").restore_sequence() == b""


def test_modes_turned_off_again_are_not_touched() -> None:
    t = fed(b"\x1b[?1049h\x1b[?25l\x1b[?2004h", b"work", b"\x1b[?2004l\x1b[?25h\x1b[?1049l")
    assert t.restore_sequence() == b""


def test_alt_screen_hidden_cursor_and_mouse_left_on_by_a_killed_agent() -> None:
    t = fed(b"\x1b[?1049h\x1b[?25l\x1b[?1000;1006h\x1b[?2004h\x1b[?1004h")
    seq = t.restore_sequence()
    for part in (b"\x1b[?1049l", b"\x1b[?25h", b"\x1b[?1000l", b"\x1b[?1006l", b"\x1b[?2004l", b"\x1b[?1004l"):
        assert part in seq
    # the cursor is shown only once back on the main screen
    assert seq.index(b"\x1b[?1049l") < seq.index(b"\x1b[?25h")
    assert b"\x1b[?1002l" not in seq   # never turned on: left alone


def test_synchronized_output_ends_first() -> None:
    seq = fed(b"\x1b[?1049h\x1b[?2026h").restore_sequence()
    assert seq.startswith(b"\x1b[?2026l")


@pytest.mark.parametrize("cut", range(1, len(b"\x1b[?1049h")))
def test_a_sequence_split_across_reads_is_still_seen(cut: int) -> None:
    whole = b"abc\x1b[?1049h"
    t = fed(whole[:3 + cut], whole[3 + cut:])
    assert t.restore_sequence() == b"\x1b[?1049l"


def test_split_byte_by_byte() -> None:
    data = b"x\x1b[?25l\x1b[>1u\x1b=y"
    t = fed(*[data[i:i + 1] for i in range(len(data))])
    assert t.restore_sequence() == b"\x1b[<1u\x1b>\x1b[?25h"


def test_keypad_application_mode_and_cursor_keys() -> None:
    assert fed(b"\x1b=\x1b[?1h").restore_sequence() == b"\x1b[?1l\x1b>"
    assert fed(b"\x1b=\x1b>").restore_sequence() == b""


def test_kitty_keyboard_pushes_are_popped_as_many_times() -> None:
    assert fed(b"\x1b[>1u\x1b[>3u").restore_sequence() == b"\x1b[<2u"
    assert fed(b"\x1b[>1u\x1b[>3u\x1b[<u").restore_sequence() == b"\x1b[<1u"
    assert fed(b"\x1b[>1u\x1b[<5u").restore_sequence() == b""
    assert fed(b"\x1b[=5;1u").restore_sequence() == b"\x1b[=0;1u"


def test_modify_other_keys() -> None:
    assert fed(b"\x1b[>4;2m").restore_sequence() == b"\x1b[>4m"
    assert fed(b"\x1b[>4;2m\x1b[>4;0m").restore_sequence() == b""
    assert fed(b"\x1b[>4;1m\x1b[>4m").restore_sequence() == b""


def test_colours_are_not_mistaken_for_modes() -> None:
    assert fed(b"\x1b[38;5;4m\x1b[4m\x1b[>0q\x1b[?6n").restore_sequence() == b""


def test_title_guard_set_is_saved_first_and_put_back() -> None:
    t = ModeTracker()
    first = t.guard_title("guard: 75% of $2.00\x07")
    assert first.startswith(TITLE_PUSH) and first.endswith(b"\x1b]2;guard: 75% of $2.00\x07")
    assert not t.guard_title("again").startswith(TITLE_PUSH)   # saved once
    assert t.restore_sequence() == TITLE_POP


def test_an_unfinished_osc_is_not_carried_forever() -> None:
    t = fed(b"\x1b]0;" + b"t" * 10_000, b"\x1b[?25l")
    assert t.restore_sequence() == b"\x1b[?25h"


def test_reset_after_restoring() -> None:
    t = fed(b"\x1b[?1049h")
    t.reset()
    assert t.restore_sequence() == b""
