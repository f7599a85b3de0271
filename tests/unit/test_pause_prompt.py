from guard.supervisor.prompt import Answer, PausePrompt


def prompt(kind="usd"):
    out: list[str] = []
    p = PausePrompt(out.append)
    p.open("halted at step 3: $1.00 task ceiling reached ($1.02 spent)", kind)
    return p, out


def test_raise_reads_an_amount_line_with_backspace():
    p, out = prompt()
    assert p.feed("x") is None          # keys outside the menu are ignored
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
