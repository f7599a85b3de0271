import math

import pytest

from guard.errors import ConfigError
from guard.units import parse_count, parse_duration, parse_usd


@pytest.mark.parametrize("text,value", [("2.5", 2.5), ("$10", 10.0), (3, 3.0), ("0.01", 0.01)])
def test_usd(text, value):
    assert parse_usd(text) == value


@pytest.mark.parametrize("text,value", [("500k", 500_000), ("1.5M", 1_500_000), ("40", 40), (12, 12), ("2K", 2000)])
def test_count(text, value):
    assert parse_count(text) == value


@pytest.mark.parametrize("text,value", [("90s", 90), ("30m", 1800), ("1h", 3600), ("2.5", 2.5), ("1.5h", 5400)])
def test_duration(text, value):
    assert parse_duration(text) == value


@pytest.mark.parametrize("bad", ["-1", "0", "nan", "inf", "abc", "", "5x", True, -3, math.nan])
def test_bad_values_are_config_errors_naming_the_flag(bad):
    for parse in (parse_usd, parse_count, parse_duration):
        with pytest.raises(ConfigError, match="--max-x"):
            parse(bad, "--max-x")


def test_one_formatter_for_money_tokens_and_counts() -> None:
    from guard.units import describe_approval, format_tokens, format_usd, plural

    assert [format_usd(v) for v in (0, 0.0805, 2.82, 1204.5, 0.004)] == ["$0.00", "$0.08", "$2.82", "$1,204.50", "$0.0040"]
    assert [format_tokens(v) for v in (950, 12_500, 207_000, 1_200_000)] == ["950", "12.5k", "207k", "1.2M"]
    assert plural(1, "step") == "1 step" and plural(2, "step") == "2 steps" and plural(0, "run") == "0 runs"
    assert describe_approval("usd", None) == "continued past the USD ceiling for the run"
    assert describe_approval("usd", 5) == "raised the USD ceiling by $5.00"
    assert describe_approval("steps", 1) == "raised the step ceiling by 1 step"
