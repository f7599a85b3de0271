"""Where each tool's requests would have gone (the upstream), and the environment that sends
them through the proxy instead.

URL layout: http://127.0.0.1:PORT/<secret>/<tool>/<provider>/<upstream path>, e.g.
ANTHROPIC_BASE_URL=http://127.0.0.1:PORT/<secret>/claude/anthropic. The tool segment tells the
proxy which refusal status that client treats as final and whether a model call is a step."""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

ANTHROPIC_DEFAULT = "https://api.anthropic.com"
OPENAI_DEFAULT = "https://api.openai.com/v1"

TOOLS = ("claude", "aider", "codex", "run")
PROVIDERS = ("anthropic", "openai")


def upstream_url(tool: str, provider: str, env: Mapping[str, str]) -> str:
    """The base URL the tool would have used without guard, read the way that tool reads it."""
    def first(*names: str) -> str | None:
        for n in names:
            v = (env.get(n) or "").strip()
            if v:
                return v
        return None

    if provider == "anthropic":
        # litellm (aider) prefers ANTHROPIC_API_BASE; Claude Code and the SDK read ANTHROPIC_BASE_URL.
        names = ("ANTHROPIC_API_BASE", "ANTHROPIC_BASE_URL") if tool == "aider" else (
            "ANTHROPIC_BASE_URL", "ANTHROPIC_API_BASE")
        return first(*names) or ANTHROPIC_DEFAULT
    if tool == "codex":
        # Codex 0.171 ignores OPENAI_BASE_URL: its config decides (RunningProxy.client_args
        # refines this with Codex's own arguments).
        return codex_upstream(env) or OPENAI_DEFAULT
    # litellm reads OPENAI_BASE_URL before OPENAI_API_BASE; so does the openai SDK (only the former).
    return first("OPENAI_BASE_URL", "OPENAI_API_BASE") or OPENAI_DEFAULT


def codex_upstream(env: Mapping[str, str], argv: Sequence[str] = (), cwd: Path | None = None) -> str | None:
    """The base URL Codex would send its requests to, or None for a provider guard cannot route
    (a local model server, Bedrock)."""
    from guard.adapters.codex_config import resolve

    return resolve(env, argv, cwd or Path(os.getcwd())).base_url


def client_env(base: str, tool: str, env: Mapping[str, str]) -> dict[str, str]:
    """Variables to add to the agent's environment so `tool` talks to the proxy at `base`
    (http://127.0.0.1:PORT/<secret>)."""
    if tool not in TOOLS:
        raise ValueError(f"unknown tool {tool!r}; expected one of {', '.join(TOOLS)}")
    anthropic = f"{base}/{tool}/anthropic"
    openai = f"{base}/{tool}/openai"
    if tool == "claude":
        return {"ANTHROPIC_BASE_URL": anthropic}
    if tool == "codex":
        # Codex reads no base URL from its environment: its adapter turns this into a `-c`
        # option (and a program Codex runs may use it, as under `guard run`).
        return {"GUARD_PROXY_URL": f"{base}/codex"}
    if tool == "run":
        return {"ANTHROPIC_BASE_URL": anthropic, "OPENAI_BASE_URL": openai, "GUARD_PROXY_URL": f"{base}/run"}
    # aider loads .env files (home, git root, cwd) with override=True AFTER reading the process
    # environment, so a project .env could point litellm elsewhere. --set-env is applied after the
    # .env files, and AIDER_SET_ENV is its environment form: it wins over any .env.
    ours = {
        "OPENAI_BASE_URL": openai,
        "OPENAI_API_BASE": openai,
        "ANTHROPIC_API_BASE": anthropic,
        "ANTHROPIC_BASE_URL": anthropic,
    }
    settings = [s for s in parse_list(env.get("AIDER_SET_ENV", ""))
                if s.split("=", 1)[0].strip() not in ours]
    settings += [f"{k}={v}" for k, v in ours.items()]
    return {**ours, "AIDER_SET_ENV": "[" + ", ".join(settings) + "]"}


def parse_list(value: str) -> list[str]:
    """configargparse's environment form of a list option: "[a, b]" (or a single value)."""
    v = value.strip()
    if not v:
        return []
    if v.startswith("[") and v.endswith("]"):
        return [p.strip() for p in v[1:-1].split(",") if p.strip()]
    return [v]


def aider_upstream_env(env: Mapping[str, str], cwd: Path, argv: Sequence[str] = ()) -> dict[str, str]:
    """The environment aider would end up with: the .env files it loads (each overriding the
    process environment), its --set-env / AIDER_SET_ENV, then --openai-api-base. Pass the result
    to start_proxy so the proxy forwards where aider itself would have gone."""
    from guard.adapters.aider_settings import arg_value, read_dotenvs

    out = {**env, **read_dotenvs(argv, env, cwd)}
    set_env = _args(argv, "--set-env") or parse_list(out.get("AIDER_SET_ENV", ""))
    for s in set_env:
        if "=" in s:
            k, v = s.split("=", 1)
            out[k.strip()] = v.strip()
    base = arg_value(argv, "--openai-api-base") or out.get("AIDER_OPENAI_API_BASE")
    if base:
        out["OPENAI_API_BASE"] = base
    return out


def _args(argv: Sequence[str], name: str) -> list[str]:
    vals = []
    for i, a in enumerate(argv):
        if a == name and i + 1 < len(argv):
            vals.append(argv[i + 1])
        elif a.startswith(name + "="):
            vals.append(a[len(name) + 1:])
    return vals
