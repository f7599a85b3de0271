from guard.supervisor.prompt import Answer, PausePrompt


def prompt(kind="usd"):
    out: list[str] = []
    p = PausePrompt(out.append)
    p.open("halted at step 3: $1.00 task ceiling reached ($1.02 spent)", kind)
    return p, out


def test_raise_reads_an_amount_line_with_backspace():
    p, out = prompt()
    assert p.feed("x") is None          # a key outside the menu shows the choices again
    assert p.feed("r") is None
    assert p.feed("57\x7f.5") is None
    assert p.feed("\r") == Answer("raise", 5.5)
    assert "raise by how much" in "".join(out)


def test_bad_amount_asks_again():
    p, out = prompt("tokens")
    p.feed("r")
    assert p.feed("lots\r") is None
    assert "amount" in out[-1] or "amount" in "".join(out[-2:])
    assert p.feed("200k\n") == Answer("raise", 200_000)


def test_continue_stop_and_ctrl_c():
    assert prompt()[0].feed("c") == Answer("continue")
    assert prompt()[0].feed("S") == Answer("stop")
    p, _ = prompt()
    p.feed("r")
    assert p.feed("\x03") == Answer("stop")


def test_ceiling_that_cannot_be_raised_goes_back_to_the_menu():
    p, out = prompt(None)
    assert p.feed("r") is None
    assert "cannot be raised" in "".join(out)
    assert p.feed("c") == Answer("continue")


def test_ctrl_c_esc_and_other_keys_at_the_menu_show_the_choices_again():
    p, out = prompt()
    opened = len(out)
    assert p.feed("\x03") is None
    assert p.feed("\x1b") is None
    assert p.feed("\x1b[A") is None      # an arrow key is one key: one redisplay
    assert p.feed("x") is None
    again = out[opened:]
    assert len(again) == 4 and all("[r]aise the ceiling" in w for w in again)
    assert p.feed("s") == Answer("stop")


def test_prompt_starts_on_a_clean_line_and_shows_soft_warnings():
    out: list[str] = []
    PausePrompt(out.append).open("halted: $2.00 task ceiling reached", "usd",
                                 soft=["75% of the $2.00 task ceiling ($1.50 spent)"])
    text = "".join(out)
    assert text.startswith("\x1b[0m\x1b[999;1H\r\n\x1b[2K")     # bottom row, a fresh line, cleared
    assert "\x1b[33mguard: warning: 75% of the $2.00 task ceiling ($1.50 spent)\x1b[0m" in text
    assert text.index("warning") < text.index("guard: paused:") < text.index("[r]aise")
