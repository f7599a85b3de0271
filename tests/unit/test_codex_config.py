"""Where Codex would send its requests, read from its config the way Codex 0.171 layers it."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from guard.adapters.codex_config import (
    CHATGPT_BACKEND,
    DEFAULT_MODEL,
    OPENAI_API,
    CodexConfigError,
    parse_args,
    parse_override,
    resolve,
)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    h = tmp_path / "codex-home"
    h.mkdir()
    return h


def env(home: Path) -> dict[str, str]:
    return {"CODEX_HOME": str(home), "HOME": str(home.parent)}


def test_defaults_without_a_config(home: Path, tmp_path: Path) -> None:
    route = resolve(env(home), ["exec", "hi"], tmp_path)
    assert (route.provider, route.base_url, route.model) == ("openai", OPENAI_API, DEFAULT_MODEL)
    assert route.override_args("http://p/x") == ["-c", 'openai_base_url="http://p/x"']


def test_config_base_url_and_model(home: Path, tmp_path: Path) -> None:
    (home / "config.toml").write_text('model = "gpt-5"\nopenai_base_url = "https://gw.example/v1"\n')
    route = resolve(env(home), [], tmp_path)
    assert (route.base_url, route.model) == ("https://gw.example/v1", "gpt-5")


def test_command_line_beats_profile_beats_config(home: Path, tmp_path: Path) -> None:
    (home / "config.toml").write_text('model = "base"\nopenai_base_url = "https://base/v1"\n')
    (home / "work.config.toml").write_text('model = "profile"\nopenai_base_url = "https://profile/v1"\n')
    assert resolve(env(home), ["--profile", "work"], tmp_path).base_url == "https://profile/v1"
    route = resolve(env(home), ["-p", "work", "exec", "-c", "openai_base_url=https://cli/v1", "-m", "cli-model"],
                    tmp_path)
    assert (route.base_url, route.model) == ("https://cli/v1", "cli-model")
    # a profile whose file does not exist adds nothing (Codex carries on with the base config)
    assert resolve(env(home), ["--profile=missing"], tmp_path).base_url == "https://base/v1"
    assert resolve(env(home), ["exec", "--ignore-user-config"], tmp_path).base_url == OPENAI_API


def test_custom_provider_entry(home: Path, tmp_path: Path) -> None:
    (home / "config.toml").write_text(
        'model_provider = "gw"\n[model_providers.gw]\nname = "Gateway"\nbase_url = "https://gw/v1"\n'
        'env_key = "GW_KEY"\nwire_api = "responses"\n')
    route = resolve(env(home), [], tmp_path)
    assert (route.provider, route.base_url) == ("gw", "https://gw/v1")
    assert route.override_args("http://p") == ["-c", 'model_providers.gw.base_url="http://p"']
    # a provider chosen on the command line, its base URL moved there too
    route = resolve(env(home), ["-c", "model_providers.gw.base_url=https://other/v1"], tmp_path)
    assert route.base_url == "https://other/v1"


def test_undefined_provider_and_missing_base_url_name_the_file(home: Path, tmp_path: Path) -> None:
    (home / "config.toml").write_text('model_provider = "nope"\n')
    with pytest.raises(CodexConfigError, match=r"config\.toml: codex model_provider 'nope' is not defined"):
        resolve(env(home), [], tmp_path)
    (home / "config.toml").write_text('model_provider = "gw"\n[model_providers.gw]\nname = "x"\n')
    with pytest.raises(CodexConfigError, match="model_providers.gw has no base_url"):
        resolve(env(home), [], tmp_path)


def test_broken_toml_names_the_file(home: Path, tmp_path: Path) -> None:
    (home / "config.toml").write_text("model = \n")
    with pytest.raises(CodexConfigError, match=r"config\.toml: not valid TOML"):
        resolve(env(home), [], tmp_path)


def test_local_and_aws_providers_cannot_be_routed(home: Path, tmp_path: Path) -> None:
    route = resolve(env(home), ["--oss", "--local-provider", "ollama"], tmp_path)
    assert (route.provider, route.routable) == ("ollama", False)
    (home / "config.toml").write_text('model_provider = "amazon-bedrock"\n')
    assert not resolve(env(home), [], tmp_path).routable


def test_chatgpt_sign_in_uses_the_chatgpt_backend(home: Path, tmp_path: Path) -> None:
    (home / "auth.json").write_text(json.dumps({"auth_mode": "chatgpt", "tokens": {"id_token": "x"}}))
    assert resolve(env(home), [], tmp_path).base_url == CHATGPT_BACKEND
    (home / "auth.json").write_text(json.dumps({"OPENAI_API_KEY": "sk-x", "tokens": None}))
    assert resolve(env(home), [], tmp_path).base_url == OPENAI_API


def test_trusted_project_config_applies(home: Path, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    (repo / "sub" / ".codex").mkdir(parents=True)
    (repo / ".codex").mkdir()
    (repo / ".codex" / "config.toml").write_text('openai_base_url = "https://repo/v1"\nmodel = "repo-model"\n')
    (repo / "sub" / ".codex" / "config.toml").write_text('openai_base_url = "https://sub/v1"\n')
    cwd = repo / "sub"
    assert resolve(env(home), [], cwd).base_url == OPENAI_API             # not trusted: ignored
    route = resolve(env(home), ["--trust"], cwd)
    assert (route.base_url, route.model) == ("https://sub/v1", "repo-model")   # the nearest wins
    (home / "config.toml").write_text(f'[projects."{repo.resolve()}"]\ntrust_level = "trusted"\n')
    assert resolve(env(home), [], cwd).base_url == "https://sub/v1"
    assert resolve(env(home), ["-C", str(repo)], tmp_path).base_url == "https://repo/v1"


def test_parse_args_forms_and_the_end_of_options() -> None:
    a = parse_args(["-c", "a=1", "--config=b.c='x'", "-cd=2", "exec", "--profile=p", "-mgpt-5", "--oss",
                    "--", "-c", "ignored=1"])
    assert a.overrides == (("a", 1), ("b.c", "x"), ("d", 2))
    assert (a.profile, a.model, a.oss) == ("p", "gpt-5", True)
    with pytest.raises(CodexConfigError, match="needs key=value"):
        parse_args(["exec", "-c"])


def test_override_values_are_toml_or_plain_text() -> None:
    assert parse_override('model="o3"') == ("model", "o3")
    assert parse_override("openai_base_url=http://h:1/v1") == ("openai_base_url", "http://h:1/v1")
    assert parse_override("x=[1, 2]") == ("x", [1, 2])
    with pytest.raises(CodexConfigError, match="expected key=value"):
        parse_override("novalue")
