"""Settings from every layer, lowest first: embedded defaults, the user's config file, the
project's `.guard.yaml` (cwd and its parents), the file named by GUARD_CONFIG, GUARD_* environment
variables, command-line flags. Each value remembers where it came from."""
from __future__ import annotations

import math
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from guard.config_sections import section_parser
from guard.errors import ConfigError
from guard.units import parse_count, parse_duration, parse_usd

TOOL_SECTIONS = ("claude", "aider", "codex", "run")

# key -> (parser, default). A parser takes (value, where) and returns the typed value.


def _choice(*allowed: str):  # type: ignore[no-untyped-def]
    def parse(v: Any, where: str) -> str:
        if not isinstance(v, str) or v not in allowed:
            raise ConfigError(f"{where}: {v!r} is not one of {', '.join(allowed)}")
        return v
    return parse


def _text(v: Any, where: str) -> str:
    if not isinstance(v, (str, int)) or isinstance(v, bool) or str(v) == "":
        raise ConfigError(f"{where}: expected a non-empty string, got {v!r}")
    return str(v)


def _fraction(v: Any, where: str) -> float:
    try:
        f = float(str(v).rstrip("%")) / (100 if str(v).endswith("%") else 1)
    except ValueError:
        raise ConfigError(f"{where}: {v!r} is not a fraction (try 0.75 or 75%)") from None
    if math.isnan(f) or not 0 < f <= 1:
        raise ConfigError(f"{where}: {v!r} must be between 0 and 1 (or 1% and 100%)")
    return f


def _whole_count(v: Any, where: str) -> int:
    """A count of things that come whole (steps): 0.4 is an error, not a rounded 0."""
    n = parse_count(v, where)
    if isinstance(v, float) and not v.is_integer():
        raise ConfigError(f"{where}: {v!r} is not a whole number")
    if n < 1:
        raise ConfigError(f"{where}: {v!r} must be at least 1")
    return n


KEYS: dict[str, tuple[Any, Any]] = {
    "max_usd": (lambda v, w: parse_usd(v, w), None),
    "max_tokens": (lambda v, w: parse_count(v, w), None),
    "max_steps": (_whole_count, None),
    "max_time": (lambda v, w: parse_duration(v, w), None),
    "on_limit": (_choice("pause", "stop", "kill"), None),  # None: pause on a terminal, else stop
    "soft_threshold": (_fraction, 0.75),
    "grace": (lambda v, w: parse_duration(v, w), 5.0),
    "unknown_price": (_choice("max", "refuse"), "max"),
    "prices": (_text, None),
    "ledger": (_text, None),
    "meter": (_choice("auto", "native", "proxy"), "auto"),
    "task": (_text, None),
    "developer": (_text, None),
    "team": (_text, None),
    "machine": (_text, None),
    "line": (_text, None),
    # developer / team ceilings (see guard.budgets)
    "timezone": (_text, "UTC"),
    "budgets": (section_parser("budgets"), {}),
    "lines": (section_parser("lines"), {}),
    "policy": (_text, None),
    "notify": (section_parser("notify"), {}),
    "offline": (_choice("last-known", "refuse", "allow"), "last-known"),
    # admission: below this output allowance a proxied request is not sent (the ceiling is reached)
    "min_output_tokens": (lambda v, w: parse_count(v, w), 4096),
    **{section: (section_parser(section), {}) for section in TOOL_SECTIONS},
}

ENV_KEYS = {
    "max_usd", "max_tokens", "max_steps", "max_time", "on_limit", "soft_threshold", "grace",
    "unknown_price", "prices", "ledger", "meter", "task", "developer", "team", "machine", "line",
    "timezone", "policy", "offline", "min_output_tokens",
}


@dataclass
class Settings:
    values: dict[str, Any] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)

    def get(self, key: str) -> Any:
        return self.values.get(key, KEYS[key][1])

    def __getattr__(self, key: str) -> Any:
        if key in KEYS:
            return self.get(key)
        raise AttributeError(key)

    def set(self, key: str, raw: Any, where: str) -> None:
        if key not in KEYS:
            raise ConfigError(f"{where}: unknown key {key!r}")
        parser, _default = KEYS[key]
        value = parser(raw, where)
        if isinstance(value, dict) and isinstance(self.values.get(key), dict):
            value = {**self.values[key], **value}
        self.values[key] = value
        self.sources[key] = where

    def source(self, key: str) -> str:
        return self.sources.get(key, "default")


def user_config_path(env: Mapping[str, str]) -> Path:
    base = env.get("XDG_CONFIG_HOME") or str(Path(env.get("HOME", "~")).expanduser() / ".config")
    return Path(base) / "guard" / "config.yaml"


def config_exists(path: Path) -> bool:
    """True for a regular file; a config error for anything else at that name (a directory or
    FIFO named .guard.yaml is a mistake to report, not a file to skip or to block on)."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return False
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        kind = "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file"
        raise ConfigError(f"{path}: is {kind}, not a config file")
    return True


def project_config_path(cwd: Path) -> Path | None:
    for d in (cwd, *cwd.parents):
        p = d / ".guard.yaml"
        if config_exists(p):
            return p
    return None


MAX_CONFIG_BYTES = 1 << 20


def load_file(path: Path, settings: Settings) -> None:
    import yaml   # here, not at import: a start without config files never pays for it

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise ConfigError(f"{path}: is not a regular file, not a config file")
            raw = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: larger than {MAX_CONFIG_BYTES >> 20} MiB, not a config file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise ConfigError(f"{path}:{line}: not UTF-8 text (byte {raw[e.start]:#04x})") from None
    if "\x00" in text:
        raise ConfigError(f"{path}:{text[:text.index(chr(0))].count(chr(10)) + 1}: binary data, not YAML")
    try:
        node = yaml.compose(text)
        data = yaml.safe_load(text)
    except RecursionError:
        raise ConfigError(f"{path}: nested too deeply to be a config file") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
        at = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"{path}{at}: invalid YAML: {problem}") from None
    if data is None:
        return
    if not isinstance(data, dict) or node is None or not isinstance(node, yaml.MappingNode):
        raise ConfigError(f"{path}:1: the config must be a mapping of keys to values")
    lines = {k.value: k.start_mark.line + 1 for k, _v in node.value if isinstance(k, yaml.ScalarNode)}
    for key, value in data.items():
        where = f"{path}:{lines.get(str(key), 1)}: {key}"
        settings.set(str(key), value, where)
    settings.files.append(path)


def load_settings(env: Mapping[str, str], cwd: Path, flags: Mapping[str, Any]) -> Settings:
    s = Settings()
    user = user_config_path(env)
    if config_exists(user):
        load_file(user, s)
    project = project_config_path(cwd)
    if project is not None:
        load_file(project, s)
    if env.get("GUARD_CONFIG"):
        path = Path(env["GUARD_CONFIG"]).expanduser()
        if not config_exists(path):
            raise ConfigError(f"GUARD_CONFIG: {path}: no such file")
        load_file(path, s)
    for key in sorted(ENV_KEYS):
        name = "GUARD_" + key.upper()
        if env.get(name):
            s.set(key, env[name], name)
    for key, value in flags.items():
        if value is not None:
            s.set(key, value, "--" + key.replace("_", "-"))
    return s
