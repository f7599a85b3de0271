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
