from pathlib import Path

import pytest

from guard.config import load_settings
from guard.errors import ConfigError


def env_for(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {"HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / "cfg"), **extra}


def test_layers_in_documented_order(tmp_path):
    user = tmp_path / "cfg" / "guard" / "config.yaml"
    user.parent.mkdir(parents=True)
    user.write_text("max_usd: 1\nmax_steps: 10\nmax_tokens: 100k\nmax_time: 1h\n")
    project = tmp_path / "proj"
    project.mkdir()
    (project / ".guard.yaml").write_text("max_usd: 2\nmax_steps: 20\nmax_tokens: 200k\n")
    extra = tmp_path / "extra.yaml"
    extra.write_text("max_usd: 3\nmax_steps: 30\n")
    s = load_settings(env_for(tmp_path, GUARD_CONFIG=str(extra), GUARD_MAX_USD="4"), project,
                      {"max_usd": None, "max_steps": None, "on_limit": "kill"})
    assert (s.max_usd, s.max_steps, s.max_tokens, s.max_time, s.on_limit) == (4.0, 30, 200_000, 3600, "kill")
    assert s.source("max_usd") == "GUARD_MAX_USD"
    assert s.source("max_steps").startswith(str(extra))
    flags = load_settings(env_for(tmp_path, GUARD_MAX_USD="4"), project, {"max_usd": "5"})
    assert flags.max_usd == 5 and flags.source("max_usd") == "--max-usd"


def test_malformed_yaml_names_file_and_line(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("max_usd: 1\nmax_steps: [1, 2\nteam: x\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml:\d+: invalid YAML"):
        load_settings(env_for(tmp_path, GUARD_CONFIG=str(f)), tmp_path, {})


def test_unknown_key_names_file_line_and_key(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("max_usd: 1\nmax_dollars: 5\n")
    with pytest.raises(ConfigError, match=r"c\.yaml:2: max_dollars: unknown key 'max_dollars'"):
        load_settings(env_for(tmp_path, GUARD_CONFIG=str(f)), tmp_path, {})


@pytest.mark.parametrize("value", ["-1", "0", ".nan", "lots"])
def test_bad_limit_in_file(tmp_path, value):
    f = tmp_path / "c.yaml"
    f.write_text(f"max_usd: {value}\n")
    with pytest.raises(ConfigError, match=r"c\.yaml:1: max_usd"):
        load_settings(env_for(tmp_path, GUARD_CONFIG=str(f)), tmp_path, {})


def test_bad_env_value_names_variable(tmp_path):
    with pytest.raises(ConfigError, match="GUARD_MAX_TIME"):
        load_settings(env_for(tmp_path, GUARD_MAX_TIME="soon"), tmp_path, {})


def test_bad_choice(tmp_path):
    with pytest.raises(ConfigError, match="--on-limit"):
        load_settings(env_for(tmp_path), tmp_path, {"on_limit": "explode"})
