"""`guard doctor`: what guard would do on this machine, and what is missing.

Only quick look-ups: an agent's version comes from its package metadata when guard can find it,
else from `TOOL --version` under a short timeout. Nothing is created: not the ledger, not a run.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from guard.errors import GuardError

VERSION_TIMEOUT = 3.0
PG_TIMEOUT = 3

# what to run when a tool is missing
INSTALL_HINTS = {
    "claude": "npm install -g @anthropic-ai/claude-code",
    "aider": "python3 -m pip install aider-install && aider-install  (or: pipx install aider-chat)",
    "codex": "npm install -g @openai/codex",
}
# the Python distribution that ships a tool's script, for reading its version without running it
PY_DISTRIBUTIONS = {"aider": "aider_chat"}


@dataclass
class Agent:
    tool: str
    path: str | None
    version: str | None
    version_source: str | None     # "package.json", "dist-info" or "--version"
    meter: str
    problem: str | None = None


@dataclass
class LedgerCheck:
    url: str
    backend: str
    reachable: bool
    exists: bool
    detail: str


@dataclass
class TreeCheck:
    subreaper: bool
    pdeathsig: bool
    cgroup: str | None       # the cgroup v2 path guard runs in, if any
    cgroup_writable: bool
    method: str


@dataclass
class Report:
    guard_version: str
    agents: list[Agent]
    ledger: LedgerCheck
    tree: TreeCheck
    config_files: list[str]
    policy: str | None
    meter_setting: str
    missing: list[str] = field(default_factory=list)   # what guard lacks here, each with its fix

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}

    @property
    def ok(self) -> bool:
        """guard can supervise something here: its ledger is usable (a missing agent is only
        a missing agent)."""
        return self.ledger.reachable


# -- agents -----------------------------------------------------------------------------------

def package_version(exe: Path) -> tuple[str, str] | None:
    """The version of the npm package or Python distribution that holds `exe`, read from disk."""
    real = exe.resolve()
    for parent in real.parents:
        pkg = parent / "package.json"
        if pkg.is_file():
            try:
                data = json.loads(pkg.read_text())
            except (OSError, ValueError):
                return None
            if isinstance(data, dict) and isinstance(data.get("version"), str) and data.get("name"):
                return data["version"], "package.json"
            return None
        if parent.name == "node_modules":
            return None
    return None


def dist_info_version(exe: Path, distribution: str) -> tuple[str, str] | None:
    """A console script's version from the dist-info next to the interpreter its shebang names."""
    try:
        with open(exe, "rb") as f:
            first = f.readline(512).decode(errors="replace")
    except OSError:
        return None
    if not first.startswith("#!") or "python" not in first:
        return None
    interpreter = Path(first[2:].split()[0])
    for lib in (interpreter.parent.parent / "lib").glob("python3*/site-packages"):
        for info in lib.glob(f"{distribution}-*.dist-info"):
            return info.name.removeprefix(f"{distribution}-").removesuffix(".dist-info"), "dist-info"
    return None


_VERSION = re.compile(r"\d+\.\d+[\w.+-]*")


def run_version(exe: str, env: dict[str, str]) -> tuple[str, str] | None:
    try:
        out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=VERSION_TIMEOUT,
                             env=env, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        return None
    m = _VERSION.search(out.stdout or out.stderr or "")
    return (m.group(0), "--version") if m else None


def find_agent(tool: str, env: dict[str, str], wrapper_dirs: tuple[Path, ...], meter: str) -> Agent:
    from guard.adapters.base import find_executable

    try:
        path = find_executable(tool, env, wrapper_dirs)
    except GuardError as e:
        return Agent(tool, None, None, None, meter, problem=f"{e}; install: {INSTALL_HINTS[tool]}")
    found = package_version(Path(path))
    if found is None and tool in PY_DISTRIBUTIONS:
        found = dist_info_version(Path(path), PY_DISTRIBUTIONS[tool])
    if found is None:
        found = run_version(path, env)
    version, source = found if found else (None, None)
    return Agent(tool, path, version, source, meter)


# -- ledger -----------------------------------------------------------------------------------

def check_ledger(url: str | None, home: Path) -> LedgerCheck:
    from guard.ledger import sqlite_path

    path = sqlite_path(url, home)
    if path is not None:
        existing = next((p for p in (path, *path.parents) if p.exists()), None)
        writable = existing is not None and os.access(existing, os.W_OK)
        if path.exists():
            detail = f"{path} ({path.stat().st_size:,} bytes)"
        else:
            detail = f"{path} (created by the first run)"
        if not writable:
            detail = f"{path}: {existing} is not writable"
        return LedgerCheck(f"sqlite:{path}", "sqlite", writable, path.exists(), detail)
    assert url is not None
    shown = re.sub(r"//([^:/@]+):[^@]*@", r"//\1:***@", url)
    try:
        import psycopg

        with psycopg.connect(url, connect_timeout=PG_TIMEOUT) as conn:
            row = conn.execute("SELECT to_regclass('runs') IS NOT NULL").fetchone()
        exists = bool(row and row[0])
        return LedgerCheck(shown, "postgresql", True, exists, "connected")
    except Exception as e:  # any failure to connect is the answer, not a crash
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        return LedgerCheck(shown, "postgresql", False, False, first)


# -- process tree -----------------------------------------------------------------------------

def check_tree() -> TreeCheck:
    """Probe in a child, so guard's own process is left as it was."""
    from guard.supervisor import linux

    probe = os.fork()
    if probe == 0:
        ok = linux.become_subreaper()
        os._exit(0 if ok else 1)
    _, status = os.waitpid(probe, 0)
    subreaper = os.waitstatus_to_exitcode(status) == 0
    cgroup = _own_cgroup()
    writable = bool(cgroup) and os.access(f"/sys/fs/cgroup{cgroup}", os.W_OK)
    method = ("process group + child subreaper (double forks stay guard's descendants) + /proc sweep "
              "by GUARD_RUN_ID; PR_SET_PDEATHSIG and a sentinel if guard dies"
              if subreaper else
              "process group + /proc sweep by GUARD_RUN_ID (no child subreaper here: a double fork "
              "escapes the group, found only by its GUARD_RUN_ID)")
    return TreeCheck(subreaper, subreaper, cgroup, writable, method)


def _own_cgroup() -> str | None:
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            if line.startswith("0::"):
                return line[3:] or "/"
    except OSError:
        pass
    return None


# -- the whole report ---------------------------------------------------------------------------

def diagnose(env: dict[str, str], cwd: Path, home: Path, flags: dict[str, Any],
             version: str) -> Report:
    from guard.config import load_settings
    from guard.plan import meter_mode

    settings = load_settings(env, cwd, flags)
    wrapper_dirs = tuple(Path(p) for p in env.get("GUARD_WRAPPER_DIR", "").split(os.pathsep) if p)
    agents = [find_agent(t, env, wrapper_dirs, meter_mode(settings.meter, t)) for t in ("claude", "aider", "codex")]
    ledger = check_ledger(settings.ledger, home)
    tree = check_tree()
    missing = [a.problem for a in agents if a.problem]
    if not ledger.reachable:
        missing.append(f"ledger {ledger.url}: {ledger.detail}; fix the URL (--ledger, GUARD_LEDGER, "
                       "`ledger:` in config) or start the server")
    if not tree.subreaper:
        missing.append("this kernel refuses PR_SET_CHILD_SUBREAPER: run guard on Linux 3.4+ for full "
                        "process-tree control")
    return Report(guard_version=version, agents=agents, ledger=ledger, tree=tree,
                  config_files=[str(p) for p in settings.files], policy=settings.policy,
                  meter_setting=settings.meter, missing=missing)


def render(report: Report) -> str:
    lines = [f"guard {report.guard_version}", "", "agents:"]
    for a in report.agents:
        if a.path is None:
            lines.append(f"  {a.tool:<7} not found")
        else:
            version = f"{a.version} (from {a.version_source})" if a.version else "version unknown"
            lines.append(f"  {a.tool:<7} {version}  {a.path}")
            lines.append(f"  {'':<7} meter: {_meter_words(a.tool, a.meter)}")
    led = report.ledger
    lines += ["", f"ledger:  {led.url}: {'reachable' if led.reachable else 'NOT reachable'}; {led.detail}"]
    lines += ["", f"process tree: {report.tree.method}"]
    if report.tree.cgroup:
        state = "writable" if report.tree.cgroup_writable else "not writable"
        lines.append(f"  cgroup v2: {report.tree.cgroup} ({state})")
    lines += ["", "config files:" + ("" if report.config_files else " none (embedded defaults)")]
    lines += [f"  {p}" for p in report.config_files]
    if report.policy:
        lines.append(f"  team policy: {report.policy}")
    lines.append("")
    if report.missing:
        lines.append("missing:")
        lines += [f"  - {p}" for p in report.missing]
    else:
        lines.append("nothing missing")
    return "\n".join(lines)


def _meter_words(tool: str, meter: str) -> str:
    native = {"claude": "transcripts + OpenTelemetry", "aider": "analytics log + Tokens/Cost lines",
              "codex": "rollout files"}[tool]
    return f"metering proxy on 127.0.0.1 + {native}" if meter == "proxy" else native
