"""How guard launches Claude Code: reading the user's arguments and settings, composing guard's
`--settings` (hooks, status line) with theirs, the telemetry environment. Pure, except reading
the user's settings files."""
from __future__ import annotations

import json
import os
import shlex
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
HOOK_SCRIPT = HERE / "claude_hooks.py"
STATUSLINE_SCRIPT = HERE / "claude_statusline.py"

# Commands that are not a session: passed through with nothing added.
SUBCOMMANDS = frozenset({
    "agents", "attach", "auth", "auto-mode", "doctor", "gateway", "import", "install", "logs", "mcp",
    "plugin", "plugins", "purge", "respawn", "rm", "setup-token", "stop", "kill", "ultrareview",
    "update", "upgrade", "config", "migrate-installer",
})

# Options whose value is the next argument (so a value is never mistaken for a flag or prompt).
VALUE_OPTIONS = frozenset({
    "--agent", "--agents", "--append-system-prompt", "--append-system-prompt-file", "--autocompact",
    "--debug-file", "--effort", "--environment", "--fallback-model", "--input-format", "--json-schema",
    "--max-budget-usd", "--max-turns", "--model", "-n", "--name", "--output-format", "--permission-mode",
    "--permission-prompts", "--plugin-dir", "--plugin-url", "--remote-control-session-name-prefix",
    "--session-id", "--setting-sources", "--settings", "--system-prompt", "--system-prompt-file",
    "--system-prompt-snapshot", "--task-budget", "--permission-prompt-tool",
})
# Options with an optional value: a following argument that is not a flag is taken as theirs.
OPTIONAL_VALUE = frozenset({"-r", "--resume", "--cloud", "--from-pr", "--teleport", "-w", "--worktree",
                            "-d", "--debug", "--prompt-suggestions", "--remote-control"})


@dataclass
class ClaudeArgs:
    """What guard needs to know about the user's command line (it is never rewritten, except
    the value of a user's own --settings, which guard merges into its own file)."""

    args: list[str]
    subcommand: str | None = None
    print_mode: bool = False
    session_id: str | None = None
    resume: str | None = None          # "" = --resume with no value (picker)
    continue_: bool = False
    fork: bool = False
    settings_index: int | None = None  # index in args of the LAST --settings value (the one that counts)
    settings_inline: bool = False      # --settings=VALUE form
    flags: set[str] = field(default_factory=set)

    @property
    def settings_value(self) -> str | None:
        if self.settings_index is None:
            return None
        a = self.args[self.settings_index]
        return a.split("=", 1)[1] if self.settings_inline else a

    @property
    def has_session_choice(self) -> bool:
        return self.session_id is not None or self.resume is not None or self.continue_

    def has(self, *names: str) -> bool:
        return any(n in self.flags for n in names)


def parse_args(args: list[str]) -> ClaudeArgs:
    out = ClaudeArgs(list(args))
    i = 0
    positional_seen = False
    while i < len(args):
        a = args[i]
        if a == "--":
            break
        if a.startswith("--"):
            name, eq, val = a.partition("=")
            out.flags.add(name)
            value: str | None = val if eq else None
            if not eq and name in VALUE_OPTIONS and i + 1 < len(args) or not eq and name in OPTIONAL_VALUE and i + 1 < len(args) and not args[i + 1].startswith("-"):
                value = args[i + 1]
                i += 1
            if name == "--print":
                out.print_mode = True
            elif name == "--continue":
                out.continue_ = True
            elif name == "--fork-session":
                out.fork = True
            elif name == "--session-id":
                out.session_id = value
            elif name == "--resume":
                out.resume = value or ""
            elif name == "--settings" and value is not None:
                out.settings_index = i
                out.settings_inline = bool(eq)
        elif a.startswith("-") and len(a) > 1:
            letters = a[1:]
            for ch in letters:
                out.flags.add(f"-{ch}")
            if "p" in letters:
                out.print_mode = True
            if "c" in letters:
                out.continue_ = True
            last = f"-{letters[-1]}"
            if last in VALUE_OPTIONS and i + 1 < len(args):
                i += 1
            elif last in OPTIONAL_VALUE and i + 1 < len(args) and not args[i + 1].startswith("-"):
                if last == "-r":
                    out.resume = args[i + 1]
                i += 1
            elif last == "-r":
                out.resume = ""
        else:
            if not positional_seen and a in SUBCOMMANDS:
                out.subcommand = a
                break
            positional_seen = True
        i += 1
    return out


def looks_like_uuid(s: str | None) -> bool:
    if not s:
        return False
    try:
        uuid.UUID(s)
    except ValueError:
        return False
    return True


# --------------------------------------------------------------------------------------------
# Settings


def config_dir(env: dict[str, str]) -> Path:
    if env.get("CLAUDE_CONFIG_DIR"):
        return Path(env["CLAUDE_CONFIG_DIR"]).expanduser()
    home = env.get("HOME") or os.path.expanduser("~")
    return Path(home) / ".claude"


def load_settings_value(value: str, cwd: Path) -> dict[str, Any]:
    """A --settings value: a JSON string or a path to a JSON file."""
    text = value.strip()
    if not text.startswith("{"):
        p = Path(value).expanduser()
        if not p.is_absolute():
            p = cwd / p
        text = p.read_text()
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError("settings must be a JSON object")
    return data


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def settings_files(cfg_dir: Path, cwd: Path) -> list[Path]:
    """Claude Code's settings files, highest precedence first (local > project > user)."""
    out = [cwd / ".claude" / "settings.local.json", cwd / ".claude" / "settings.json"]
    out.append(cfg_dir / "settings.json")
    return out


def user_statusline(flag_settings: dict[str, Any] | None, cfg_dir: Path, cwd: Path) -> dict[str, Any] | None:
    """The status line the user would see without guard (the highest-precedence one)."""
    candidates: list[dict[str, Any] | None] = [flag_settings]
    candidates += [_read_json(p) for p in settings_files(cfg_dir, cwd)]
    for s in candidates:
        if s and isinstance(s.get("statusLine"), dict):
            return dict(s["statusLine"])
    return None


def user_settings_env(cfg_dir: Path, cwd: Path, flag_settings: dict[str, Any] | None) -> dict[str, str]:
    """The `env` blocks of the user's settings (they override the process environment)."""
    merged: dict[str, str] = {}
    sources = [_read_json(p) for p in reversed(settings_files(cfg_dir, cwd))] + [flag_settings]
    for s in sources:
        if s and isinstance(s.get("env"), dict):
            merged.update({str(k): str(v) for k, v in s["env"].items()})
    return merged


def _cmd(*parts: str | Path) -> str:
    return " ".join(shlex.quote(str(p)) for p in parts)


# Matches the state file's "halt" once it holds an object (not null), however it is spaced.
HALT_PATTERN = '"halt" *: *[{]'


def hook_command(event: str, state_path: Path, sessions_file: Path, python: str = sys.executable) -> str:
    full = _cmd(python, "-S", "-I", HOOK_SCRIPT, event, state_path, sessions_file)
    if event in ("pre", "post"):
        # every tool call runs these: a grep (a few ms) decides, Python (~40 ms) only answers a halt
        return f"grep -Eqs {shlex.quote(HALT_PATTERN)} {shlex.quote(str(state_path))} && exec {full}; exit 0"
    return full


def guard_settings(
    state_path: Path,
    sessions_file: Path,
    user_status: dict[str, Any] | None,
    python: str = sys.executable,
) -> dict[str, Any]:
    def hook(event: str) -> dict[str, Any]:
        return {"type": "command", "command": hook_command(event, state_path, sessions_file, python),
                "timeout": 10}

    status_cmd = [python, "-S", "-I", str(STATUSLINE_SCRIPT), str(state_path)]
    if user_status and user_status.get("type", "command") == "command" and user_status.get("command"):
        status_cmd.append(str(user_status["command"]))
    status: dict[str, Any] = {"type": "command", "command": _cmd(*status_cmd)}
    if user_status and "padding" in user_status:
        status["padding"] = user_status["padding"]
    return {
        "hooks": {
            "PreToolUse": [{"matcher": "*", "hooks": [hook("pre")]}],
            "PostToolUse": [{"matcher": "*", "hooks": [hook("post")]}],
            "UserPromptSubmit": [{"hooks": [hook("prompt")]}],
            "SessionStart": [{"hooks": [hook("session")]}],
        },
        "statusLine": status,
    }


def merge_settings(user: dict[str, Any] | None, ours: dict[str, Any]) -> dict[str, Any]:
    """The user's --settings with guard's hooks appended to theirs (never replacing them) and
    guard's status line (which already runs theirs)."""
    out = dict(user or {})
    hooks = dict(out.get("hooks") or {}) if isinstance(out.get("hooks"), dict) else {}
    for event, groups in ours["hooks"].items():
        existing = hooks.get(event)
        hooks[event] = (list(existing) if isinstance(existing, list) else []) + list(groups)
    out["hooks"] = hooks
    out["statusLine"] = ours["statusLine"]
    return out


# --------------------------------------------------------------------------------------------
# Telemetry


def _truthy(v: str | None) -> bool:
    return (v or "").strip().lower() in ("1", "true", "yes", "on")


def user_exports_telemetry(env: dict[str, str], settings_env: dict[str, str]) -> bool:
    merged = {**env, **settings_env}
    return _truthy(merged.get("CLAUDE_CODE_ENABLE_TELEMETRY"))


def telemetry_env(endpoint: str, interval_ms: int = 500) -> dict[str, str]:
    # The logs-specific variables leave any metrics/traces configuration alone.
    return {
        "CLAUDE_CODE_ENABLE_TELEMETRY": "1",
        "OTEL_LOGS_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_LOGS_PROTOCOL": "http/json",
        "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT": f"{endpoint}/v1/logs",
        "OTEL_LOGS_EXPORT_INTERVAL": str(interval_ms),
    }


def fmt_usd(v: float) -> str:
    # never round up: the inner fence must not sit above guard's own ceiling
    return f"{max(0.0, int(v * 10_000) / 10_000):.4f}"


# Claude Code's exit hint repeats its launch flags, guard's --settings among them: resumed
# outside guard, that file's hooks would refuse every prompt. With a launcher program named,
# it prints `<launcher> --resume ID` and no flags (2.1.330 accepts a single word only).
RESUME_HINT_VAR = "CLAUDE_CODE_RESUME_HINT_COMMAND"


def resume_hint_env(env: dict[str, str]) -> dict[str, str]:
    """The variable that keeps guard's settings out of the resume hint (the user's own wins)."""
    return {} if env.get(RESUME_HINT_VAR) else {RESUME_HINT_VAR: "claude"}
