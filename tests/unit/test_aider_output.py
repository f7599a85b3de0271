"""aider's printed usage report: terminal (wrapped, coloured, chunked) and chat-history copies."""
from __future__ import annotations

import io
from pathlib import Path

import pytest

from guard.adapters.aider_output import (
    Marker,
    ReportScanner,
    TerminalDecoder,
    TokenReport,
    format_tokens,
    parse_count,
)

# copies of the samples captured from aider-chat 0.86.2 (shared/reference/aider)
REFERENCE = Path(__file__).resolve().parents[1] / "fixtures" / "aider"

# Captured from aider-chat 0.86.2 (--no-stream) against the fake server: COLUMNS=40, a priced
# model, both cache fields -> the two-line form, its first line wrapped by rich.
CAPTURE_CACHE_COLS40 = (
    b"\nAider v0.86.2\nModel: openai/fake-main with whole edit \nformat\nGit repo: none\n"
    b"Repo-map: disabled\n\nHello from the fake LLM.\n\nTokens: 16k sent, 2.0k cache write, 3.0k\n"
    b"cache hit, 678 received.\nCost: $0.02 message, $0.02 session.\n"
)
# COLUMNS=30, an unpriced model: no Cost part, then aider's next line.
CAPTURE_UNPRICED_COLS30 = (
    b"Repo-map: disabled\n\nHello from the fake LLM.\n\nTokens: 14k sent, 678 \nreceived.\n"
    b"HTTPSConnectionPool(host='raw.githubusercontent.com', port=443): Max retries exceeded\n"
)
# A PTY (pretty output, COLUMNS=60): spinner with backspaces and \r, colours, CRLF, the one-line
# form wrapped before "session.".
CAPTURE_PTY_COLS60 = (
    b"\xe2\x96\x91\xe2\x96\x88         Waiting for openai/fake-main" + b"\x08" * 39
    + b"\r                                       \r\x1b[?25h\x1b[94mHello from the fake LLM.\x1b[0m"
    b"                                    \r\n\r\nTokens: 14k sent, 678 received. Cost: $0.02 message, "
    b"$0.02 \r\nsession.\r\n"
)
# A PTY at COLUMNS=50 with the two-line form wrapped inside its first line.
CAPTURE_PTY_CACHE_COLS50 = (
    b"\x1b[7mAider v0.86.2\x1b[0m\r\nModel: openai/fake-main with whole edit format\r\n"
    b"\xe2\x96\x91\xe2\x96\x88\x08\x08  \x08\x08\x1b[94mHello from the fake LLM.\x1b[0m      \r\n\r\n"
    b"Tokens: 16k sent, 2.0k cache write, 3.0k cache \r\nhit, 678 received.\r\n"
    b"Cost: $0.02 message, $0.02 session.\r\n"
)


def scan_terminal(data: bytes, chunk: int | None = None) -> list[object]:
    dec, sc = TerminalDecoder(), ReportScanner()
    out: list[object] = []
    step = chunk or len(data) or 1
    for i in range(0, len(data), step):
        out += sc.feed(dec.decode(data[i:i + step]))
    out += sc.feed(dec.decode(b"", final=True))
    return out + sc.flush()


def reports(items: list[object]) -> list[TokenReport]:
    return [i for i in items if isinstance(i, TokenReport)]


@pytest.mark.parametrize("text,count", [("0", 0), ("678", 678), ("1.0k", 1000), ("2.4k", 2400),
                                        ("9.9k", 9900), ("12k", 12000), ("250k", 250000)])
def test_parse_count(text: str, count: int) -> None:
    assert parse_count(text) == count


@pytest.mark.parametrize("n", [0, 999, 1000, 1049, 2386, 9999, 10000, 12345, 14345, 999_999, 1_234_567])
def test_format_tokens_matches_aider_and_round_trips_within_its_precision(n: int) -> None:
    text = format_tokens(n)
    assert text == _aider_format_tokens(n)
    back = parse_count(text)
    assert abs(back - n) <= (0 if n < 1000 else 50 if n < 10000 else 500)


def _aider_format_tokens(count: int) -> str:
    """aider/utils.py format_tokens, as shipped in 0.86.2."""
    if count < 1000:
        return f"{count}"
    elif count < 10000:
        return f"{count / 1000:.1f}k"
    else:
        return f"{round(count / 1000)}k"


def test_one_line_form() -> None:
    [r] = reports(scan_terminal(b"All good.\nTokens: 2.8k sent, 3 received. Cost: $0.0028 message, "
                                b"$0.0080 session.\n"))
    assert (r.sent, r.received, r.cache_write, r.cache_hit) == (2800, 3, 0, 0)
    assert (r.message_cost, r.session_cost) == (0.0028, 0.008)
    assert (r.sent_text, r.received_text) == ("2.8k", "3")


def test_two_line_cache_form_wrapped_at_40_columns() -> None:
    [r] = reports(scan_terminal(CAPTURE_CACHE_COLS40))
    assert (r.sent, r.cache_write, r.cache_hit, r.received) == (16000, 2000, 3000, 678)
    assert r.message_cost == 0.02 and r.session_cost == 0.02


def test_no_cost_part_wrapped_then_another_line() -> None:
    items = scan_terminal(CAPTURE_UNPRICED_COLS30)
    [r] = reports(items)
    assert (r.sent, r.received, r.message_cost) == (14000, 678, None)


@pytest.mark.parametrize("capture", [CAPTURE_PTY_COLS60, CAPTURE_PTY_CACHE_COLS50])
@pytest.mark.parametrize("chunk", [None, 1, 2, 3, 7, 64])
def test_pty_output_in_any_chunking(capture: bytes, chunk: int | None) -> None:
    """ANSI escapes and UTF-8 characters cut by a chunk boundary, CRLF, spinner backspaces."""
    [r] = reports(scan_terminal(capture, chunk))
    assert r.sent in (14000, 16000) and r.received == 678 and r.message_cost == 0.02


def test_no_cost_report_is_held_until_the_next_line_or_idle_flush() -> None:
    now = [100.0]
    sc = ReportScanner(clock=lambda: now[0])
    assert sc.feed("Tokens: 12k sent, 5 received.\n") == []     # a Cost line may follow
    assert sc.flush(idle=1.0) == []
    now[0] += 1.5
    [r] = sc.flush(idle=1.0)
    assert isinstance(r, TokenReport) and r.message_cost is None
    # and the same report decided by the next line, which is still read as a line of its own
    sc = ReportScanner()
    items = sc.feed("Tokens: 12k sent, 5 received.\nCommit 84f09a4 feat: x\n")
    assert [type(i) for i in items] == [TokenReport, Marker]


def test_cost_part_cut_by_wrapping_waits_for_session() -> None:
    sc = ReportScanner()
    assert sc.feed("Tokens: 2.5k sent, 2.0k cache write, 678 received. Cost: $0.0025 message, $0.0025\n") == []
    [r] = sc.feed("session.\n")
    assert isinstance(r, TokenReport) and r.cache_write == 2000 and r.message_cost == 0.0025


@pytest.mark.parametrize("columns", [20, 28, 33, 40, 55, 80])
def test_rich_wrapping_at_any_width(columns: int) -> None:
    """aider prints with rich: wrap the real report lines the way rich does at each width."""
    from rich.console import Console
    from rich.text import Text

    buf = io.StringIO()
    console = Console(file=buf, width=columns, force_terminal=False, color_system=None)
    console.print(Text("Tokens: 14k sent, 2.0k cache write, 3.0k cache hit, 678 received.\n"
                       "Cost: $0.03 message, $0.03 session."))
    console.print(Text("Tokens: 2.4k sent, 11 received. Cost: $0.0061 message, $0.0061 session."))
    console.print(Text("Tokens: 250k sent, 1.2k received."))
    console.print(Text("Applied edit to hello.py"))
    got = reports(scan_terminal(buf.getvalue().encode()))
    assert [(r.sent, r.cache_write, r.cache_hit, r.received, r.message_cost) for r in got] == [
        (14000, 2000, 3000, 678, 0.03), (2400, 0, 0, 11, 0.0061), (250000, 0, 0, 1200, None)]


def test_markers_of_calls_aider_never_counts() -> None:
    items = scan_terminal(b"Commit 0dff7f8 feat: fake commit message\nRetrying in 0.5 seconds...\n"
                          b"I will Commit later\n")
    assert [(m.kind) for m in items if isinstance(m, Marker)] == ["commit", "retry"]


def test_a_tokens_line_that_never_completes_is_dropped() -> None:
    sc = ReportScanner()
    out = sc.feed("Tokens: are what we count\n" + "more text\n" * 20 + "Tokens: 5 sent, 6 received.\n")
    assert reports(out + sc.flush()) == [TokenReport(5, 6, sent_text="5", received_text="6")]


# -- chat history --------------------------------------------------------------------------------


def history(name: str) -> list[object]:
    sc = ReportScanner(quoted=True)
    return sc.feed((REFERENCE / name).read_text()) + sc.flush()


def test_history_stream_sample() -> None:
    [r] = reports(history("chat-history-stream.md"))
    assert (r.sent, r.received, r.message_cost, r.session_cost) == (2400, 11, 0.0061, 0.0061)


def test_history_cache_sample_second_line_is_not_quoted() -> None:
    [r] = reports(history("chat-history-cache-tokens.md"))
    assert (r.sent, r.cache_write, r.cache_hit, r.received) == (14000, 2000, 3000, 678)
    assert r.message_cost == 0.03


def test_history_with_commit_sample_two_sessions() -> None:
    items = history("chat-history-with-commit.md")
    assert [type(i).__name__ for i in items] == ["TokenReport", "Marker", "TokenReport"]
    assert all(r.sent == 12000 and r.received == 678 and r.message_cost == 0.04 for r in reports(items))


def test_history_ignores_unquoted_text_the_model_wrote() -> None:
    text = ("#### hi  \n\nTokens: 5 sent, 6 received. Cost: $1.00 message, $1.00 session.\n\n"
            "> Tokens: 7 sent, 8 received.  \n> Applied edit to x.py  \n")
    sc = ReportScanner(quoted=True)
    got = reports(sc.feed(text) + sc.flush())
    assert [(r.sent, r.received, r.message_cost) for r in got] == [(7, 8, None)]


def test_history_no_cost_then_quoted_line() -> None:
    sc = ReportScanner(quoted=True)
    items = sc.feed("> Tokens: 14k sent, 678 received.  \n> Commit 84f09a4 feat: x  \n")
    assert [type(i).__name__ for i in items] == ["TokenReport", "Marker"]
