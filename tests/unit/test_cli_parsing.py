from guard.cli import split_argv
from guard.supervisor.prompt import parse_amount, parse_choice


def test_tool_args_reach_the_tool_verbatim():
    head, tail = split_argv(["--max-usd", "2", "claude", "-p", "--max-usd", "9", "--", "x"])
    assert head == ["--max-usd", "2", "claude"]
    assert tail == ["-p", "--max-usd", "9", "--", "x"]


def test_run_drops_only_the_first_double_dash():
    assert split_argv(["run", "--", "cmd", "--", "a"]) == (["run"], ["cmd", "--", "a"])


def test_other_subcommands_left_to_click():
    assert split_argv(["runs", "--json"]) == (["runs", "--json"], [])


def test_option_value_that_looks_like_a_tool_is_a_value():
    assert split_argv(["--task", "run", "aider", "--yes"]) == (["--task", "run", "aider"], ["--yes"])


def test_prompt_parsing():
    assert parse_choice("R") == "raise" and parse_choice("s") == "stop" and parse_choice("x") is None
    assert parse_amount("usd", "$5") == 5.0
    assert parse_amount("tokens", "200k") == 200_000
    assert parse_amount("time", "15m") == 900
