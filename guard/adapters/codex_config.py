"""Where the Codex CLI sends its model requests and which model it asks for, read the way Codex
0.171 reads them: `$CODEX_HOME/config.toml` (`model`, `model_provider`, `openai_base_url`, the
`model_providers` tables), the `--profile NAME` layer `$CODEX_HOME/NAME.config.toml`, a trusted
project's `.codex/config.toml`, `-c key=value`, `--model`/`--oss`; `auth.json` for the ChatGPT
backend.

Codex 0.171 ignores OPENAI_BASE_URL (openai/codex PR #16720): a base URL only reaches it through
its config, which `-c key=value` overrides. `CodexRoute.override_args` is that override."""
from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from guard.errors import ConfigError

# Codex 0.171.0's built-in default model (it prints it in `codex exec`'s header).
DEFAULT_MODEL = "gpt-6.2-sol"
OPENAI_API = "https://api.openai.com/v1"
CHATGPT_BACKEND = "https://chatgpt.com/backend-api/codex"
# Providers built into Codex whose endpoint `-c` cannot move (a local model server, AWS).
BUILT_IN_UNROUTABLE = ("ollama", "lmstudio", "oss", "amazon-bedrock")
_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


class CodexConfigError(ConfigError):
    """Codex's configuration cannot be read, or names something Codex itself would reject."""


@dataclass(frozen=True)
class CodexArgs:
    """What guard needs from Codex's command line (everything else reaches Codex untouched)."""

    overrides: tuple[tuple[str, Any], ...] = ()   # -c key=value, in order
    profile: str | None = None
    model: str | None = None
    oss: bool = False
    local_provider: str | None = None
    cd: str | None = None          # -C/--cd: the project whose .codex/config.toml may apply
    trust: bool = False            # --trust: apply that project's config
    ignore_user_config: bool = False


@dataclass(frozen=True)
class CodexRoute:
    provider: str             # Codex's model_provider id: "openai" or a model_providers entry
    base_url: str | None      # where Codex would send /responses; None: guard cannot move it
    model: str                # the model Codex will ask for (the rollouts' turn_context is the truth)
    override_key: str | None  # the config key that moves the base URL

    @property
    def routable(self) -> bool:
        return self.base_url is not None and self.override_key is not None

    def override_args(self, url: str) -> list[str]:
        """Codex's own top-level option that sends its requests to `url` instead."""
        if self.override_key is None:
            raise CodexConfigError(f"codex: provider {self.provider!r} cannot be routed through guard's proxy")
        return ["-c", f"{self.override_key}={json.dumps(url)}"]


def codex_home(env: Mapping[str, str]) -> Path:
    home = env.get("CODEX_HOME")
    if home:
        return Path(home)
    return Path(env.get("HOME") or Path.home()).expanduser() / ".codex"


def load_config(env: Mapping[str, str]) -> dict[str, Any]:
    return _load(codex_home(env) / "config.toml")


def _load(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except (FileNotFoundError, NotADirectoryError):
        return {}
    except (OSError, UnicodeDecodeError) as e:
        raise CodexConfigError(f"{path}: cannot read codex's config: {e}") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise CodexConfigError(f"{path}: not valid TOML: {e}") from None


def layers(env: Mapping[str, str], args: CodexArgs, cwd: Path) -> dict[str, Any]:
    """The merged config: user config.toml, the --profile file, a trusted project's
    .codex/config.toml files (the nearest last), then -c overrides."""
    home = codex_home(env)
    config = {} if args.ignore_user_config else load_config(env)
    if args.profile:
        config = merge(config, _load(home / f"{args.profile}.config.toml"))
    workdir = (cwd / args.cd) if args.cd else cwd
    if args.trust or _trusted(config, workdir):
        for d in reversed(_project_dirs(workdir)):
            f = d / ".codex" / "config.toml"
            if f.parent.resolve() != home.resolve():
                config = merge(config, _load(f))
    for key, value in args.overrides:
        config = merge(config, _nest(key.split("."), value))
    return config


def _trusted(config: dict[str, Any], workdir: Path) -> bool:
    projects = config.get("projects")
    if not isinstance(projects, dict):
        return False
    for d in _project_dirs(workdir):
        entry = projects.get(str(d))
        if isinstance(entry, dict) and entry.get("trust_level") == "trusted":
            return True
    return False


def _project_dirs(workdir: Path) -> list[Path]:
    """workdir and its parents up to the enclosing git repository's root (nearest first)."""
    try:
        d = workdir.resolve()
    except OSError:
        return []
    out = [d]
    while not (d / ".git").exists() and d.parent != d:
        d = d.parent
        out.append(d)
    return out if (d / ".git").exists() else out[:1]


def merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """Tables merge key by key; anything else in `top` replaces what `base` had."""
    out = dict(base)
    for k, v in top.items():
        old = out.get(k)
        out[k] = merge(old, v) if isinstance(old, dict) and isinstance(v, dict) else v
    return out


def _nest(parts: list[str], value: Any) -> dict[str, Any]:
    return {parts[0]: _nest(parts[1:], value) if len(parts) > 1 else value}


def parse_args(argv: Sequence[str]) -> CodexArgs:
    """Codex's routing options, wherever they sit (top level or after a subcommand)."""
    overrides: list[tuple[str, Any]] = []
    profile = model = local = cd = None
    oss = trust = ignore_user = False
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--":
            break
        name, value, used = _option(argv, i)
        if name in ("-c", "--config"):
            if value is None:
                raise CodexConfigError(f"codex: {a} needs key=value")
            overrides.append(parse_override(value))
        elif name in ("-p", "--profile"):
            profile = value
        elif name in ("-m", "--model"):
            model = value
        elif name == "--local-provider":
            local = value
        elif name in ("-C", "--cd"):
            cd = value
        elif a == "--oss":
            oss = True
        elif a == "--trust":
            trust = True
        elif a == "--ignore-user-config":
            ignore_user = True
        i += used
    return CodexArgs(tuple(overrides), profile, model, oss, local, cd, trust, ignore_user)


def _option(argv: Sequence[str], i: int) -> tuple[str | None, str | None, int]:
    """(option name, its value, how many items it took) for the options parse_args reads."""
    a = argv[i]
    for name in ("--config", "--profile", "--model", "--local-provider", "--cd"):
        if a == name:
            return name, argv[i + 1] if i + 1 < len(argv) else None, 2
        if a.startswith(name + "="):
            return name, a[len(name) + 1:], 1
    for name in ("-c", "-p", "-m", "-C"):
        if a == name:
            return name, argv[i + 1] if i + 1 < len(argv) else None, 2
        if a.startswith(name) and len(a) > 2 and not a.startswith("--"):
            return name, a[2:], 1
    return None, None, 1


def parse_override(item: str) -> tuple[str, Any]:
    """`key=value` as Codex reads it: the value is TOML when it parses, a plain string otherwise."""
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise CodexConfigError(f"codex: -c {item!r}: expected key=value")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return key, value


def chatgpt_auth(env: Mapping[str, str]) -> bool:
    """Signed in with ChatGPT (`codex login`), so the openai provider talks to the ChatGPT backend."""
    try:
        auth = json.loads((codex_home(env) / "auth.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(auth, dict):
        return False
    mode = str(auth.get("auth_mode") or "").lower()
    if mode:
        return mode.startswith("chatgpt")
    return isinstance(auth.get("tokens"), dict) and not auth.get("OPENAI_API_KEY")


def resolve(env: Mapping[str, str], argv: Sequence[str] = (), cwd: Path | None = None) -> CodexRoute:
    """Codex's provider, base URL and model for this launch."""
    args = parse_args(argv)
    config = layers(env, args, cwd or Path.cwd())
    where = codex_home(env) / "config.toml"
    model = args.model or _text(config.get("model")) or DEFAULT_MODEL
    if args.oss:
        provider = args.local_provider or _text(config.get("oss_provider")) or "oss"
    else:
        provider = _text(config.get("model_provider")) or "openai"
    if provider == "openai":
        base = _text(config.get("openai_base_url")) or (CHATGPT_BACKEND if chatgpt_auth(env) else OPENAI_API)
        return CodexRoute(provider, base, model, "openai_base_url")
    if provider in BUILT_IN_UNROUTABLE:
        return CodexRoute(provider, None, model, None)
    providers = config.get("model_providers")
    entry = providers.get(provider) if isinstance(providers, dict) else None
    if not isinstance(entry, dict):
        raise CodexConfigError(f"{where}: codex model_provider {provider!r} is not defined in model_providers")
    entry_url = _text(entry.get("base_url"))
    if not entry_url:
        raise CodexConfigError(f"{where}: model_providers.{provider} has no base_url")
    key = f"model_providers.{provider}.base_url" if _BARE_KEY.match(provider) else None
    return CodexRoute(provider, entry_url, model, key)


def _text(v: Any) -> str | None:
    return v.strip() or None if isinstance(v, str) else None
