"""Which of aider's settings decide where its cost signals go, read the way aider reads them.

aider (configargparse) takes each option from, highest first: the command line, the environment
(where `.env` files have been loaded with override, so they beat the real environment), then the
YAML config files (--config, ./.aider.conf.yml, <git root>/.aider.conf.yml, ~/.aider.conf.yml),
then its default. guard needs to know three of them before launch: the analytics log (the user may
already keep one: then guard reads theirs instead of redirecting it), the chat-history file (the
second signal), and whether replies stream (aider's counts are its own estimates then).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_TRUE = {"1", "true", "yes", "on", "y"}


@dataclass(frozen=True)
class AiderSettings:
    git_root: Path | None
    analytics_log: Path | None        # the user's own log, if they set one anywhere
    analytics_log_origin: str | None  # 'argument' | '.env' | 'environment' | 'config'
    chat_history: Path
    stream: bool
    model: str | None
    keepalive_pings: int


def find_git_root(cwd: Path) -> Path | None:
    """aider's first guess (it uses it for defaults even with --no-git)."""
    for d in (cwd, *cwd.parents):
        if (d / ".git").exists():
            return d
    return None


def arg_value(args: Sequence[str], *names: str) -> str | None:
    """The last value given to any of `names` (`--opt VALUE` or `--opt=VALUE`)."""
    found: str | None = None
    i = 0
    while i < len(args):
        a = args[i]
        if a == "--":
            break
        for name in names:
            if a == name and i + 1 < len(args):
                found = args[i + 1]
                i += 1
                break
            if a.startswith(name + "="):
                found = a[len(name) + 1:]
                break
        i += 1
    return found


def arg_flag(args: Sequence[str], name: str) -> bool | None:
    """A BooleanOptionalAction: --name -> True, --no-name -> False, last wins, None if absent."""
    out: bool | None = None
    for a in args:
        if a == "--":
            break
        if a == f"--{name}":
            out = True
        elif a == f"--no-{name}":
            out = False
    return out


def parse_dotenv(text: str) -> dict[str, str]:
    """The common subset of python-dotenv's syntax: KEY=VALUE, `export`, quotes, comments."""
    out: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[7:].lstrip()
        key, sep, value = line.partition("=")
        if not sep:
            continue
        key = key.strip()
        value = value.strip()
        if value[:1] in ("'", '"'):
            quote = value[0]
            end = value.find(quote, 1)
            value = value[1:end] if end > 0 else value[1:]
        else:
            value = value.split(" #", 1)[0].strip()
        out[key] = value
    return out


def _read_dotenvs(paths: Sequence[Path]) -> dict[str, str]:
    merged: dict[str, str] = {}
    seen: set[Path] = set()
    for p in paths:
        try:
            rp = p.resolve()
        except OSError:
            continue
        if rp in seen:
            continue
        seen.add(rp)
        try:
            merged.update(parse_dotenv(rp.read_text(errors="replace")))
        except OSError:
            continue
    return merged


def read_dotenvs(args: Sequence[str], env: Mapping[str, str], cwd: Path, home: Path | None = None) -> dict[str, str]:
    """What aider's .env files set, in its order (later wins): ~/.env, <git root>/.env, ./.env,
    then --env-file / AIDER_ENV_FILE (default <git root>/.env). Loaded with override, so these
    beat the process environment."""
    home = home or Path(env.get("HOME") or Path.home())
    git_root = find_git_root(cwd)
    env_file = arg_value(args, "--env-file") or env.get("AIDER_ENV_FILE")
    paths = [home / ".env"]
    if git_root:
        paths.append(git_root / ".env")
    paths.append(cwd / ".env")
    if env_file:
        p = home / env_file[2:] if env_file.startswith("~/") else Path(env_file)
        paths.append(p if p.is_absolute() else cwd / p)
    else:
        paths.append((git_root or cwd) / ".env")
    return _read_dotenvs(paths)


def _read_configs(paths: Sequence[Path]) -> list[dict[str, Any]]:
    import yaml

    out: list[dict[str, Any]] = []
    for p in paths:
        try:
            data = yaml.safe_load(p.read_text(errors="replace"))
        except (OSError, ValueError, yaml.YAMLError):
            continue
        if isinstance(data, dict):
            out.append(data)
    return out


def resolve(args: Sequence[str], env: dict[str, str], cwd: Path, home: Path | None = None) -> AiderSettings:
    home = home or Path(env.get("HOME") or Path.home())
    git_root = find_git_root(cwd)

    def path(value: str) -> Path:
        # aider expands ~ with ITS home (the child's HOME), resolves the rest against its cwd
        p = home / value[2:] if value.startswith("~/") else Path(value)
        return p if p.is_absolute() else cwd / p

    dotenv = read_dotenvs(args, env, cwd, home)
    eff_env = {**env, **dotenv}

    config_paths = []
    explicit = arg_value(args, "--config", "-c") or env.get("AIDER_CONFIG")
    if explicit:
        config_paths.append(path(explicit))
    config_paths.append(cwd / ".aider.conf.yml")
    if git_root:
        config_paths.append(git_root / ".aider.conf.yml")
    config_paths.append(home / ".aider.conf.yml")
    configs = _read_configs(config_paths)

    def setting(opt: str) -> tuple[Any, str | None]:
        v = arg_value(args, f"--{opt}")
        if v is not None:
            return v, "argument"
        var = "AIDER_" + opt.upper().replace("-", "_")
        if var in dotenv:
            return dotenv[var], ".env"
        if var in env:
            return env[var], "environment"
        for c in configs:
            if opt in c and c[opt] is not None:
                return c[opt], "config"
        return None, None

    log, origin = setting("analytics-log")
    analytics_log = path(str(log)) if log else None

    hist, _ = setting("chat-history-file")
    chat_history = path(str(hist)) if hist else (git_root or cwd) / ".aider.chat.history.md"

    stream = arg_flag(args, "stream")
    if stream is None:
        var = "AIDER_STREAM"
        if var in eff_env:
            stream = eff_env[var].strip().lower() in _TRUE
        else:
            stream = True
            for c in configs:
                if "stream" in c:
                    v = c["stream"]
                    stream = v if isinstance(v, bool) else str(v).strip().lower() in _TRUE
                    break

    model, _ = setting("model")
    pings_raw, _ = setting("cache-keepalive-pings")
    try:
        pings = int(pings_raw) if pings_raw is not None else 0
    except (TypeError, ValueError):
        pings = 0

    return AiderSettings(
        git_root=git_root,
        analytics_log=analytics_log,
        analytics_log_origin=origin if analytics_log else None,
        chat_history=chat_history,
        stream=bool(stream),
        model=str(model) if model else None,
        keepalive_pings=pings,
    )
