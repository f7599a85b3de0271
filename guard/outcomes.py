"""Where a run's work went: repository, branch, and the commit before and after it.

Read from the files under .git (HEAD, refs, packed-refs, config) rather than by spawning git, so a
capture at run start costs well under the 20 ms budget. Only when the refs are stored in a way these
readers do not know (reftable) is `git rev-parse` asked.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

_SHA = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")


@dataclass(frozen=True)
class GitDirs:
    worktree: Path      # the top of the work tree
    git_dir: Path       # this work tree's own .git (HEAD lives here)
    common_dir: Path    # refs, packed-refs and config (differs from git_dir in a linked worktree)


def find_git(cwd: Path) -> GitDirs | None:
    # as git does: never walk up into a directory named in GIT_CEILING_DIRECTORIES
    ceilings = {Path(p) for p in os.environ.get("GIT_CEILING_DIRECTORIES", "").split(os.pathsep) if p}
    for d in (cwd, *cwd.parents):
        if d != cwd and d in ceilings:
            return None
        dot = d / ".git"
        if dot.is_dir():
            return GitDirs(d, dot, _common(dot))
        if dot.is_file():
            # a linked worktree or submodule: ".git" holds "gitdir: PATH"
            text = dot.read_text(errors="replace").strip()
            if text.startswith("gitdir:"):
                g = Path(text.removeprefix("gitdir:").strip())
                g = g if g.is_absolute() else (d / g).resolve()
                return GitDirs(d, g, _common(g))
            return None
    return None


def _common(git_dir: Path) -> Path:
    f = git_dir / "commondir"
    if f.is_file():
        c = Path(f.read_text().strip())
        return c if c.is_absolute() else (git_dir / c).resolve()
    return git_dir


def strip_credentials(url: str) -> str:
    """A remote URL without user:password@ (tokens live there) and without a query string.
    scp-like `git@host:path` names an ssh user, not a secret, and is kept."""
    if "://" not in url:
        return url
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


_SECTION = re.compile(r'^\[\s*([A-Za-z0-9.-]+)(?:\s+"((?:[^"\\]|\\.)*)")?\s*\]')


def read_config(common_dir: Path) -> dict[tuple[str, str], str]:
    """(section, key) -> value from .git/config, e.g. ('remote "origin"', 'url'). Only the first
    value of a key counts; keys without a value (booleans) are skipped: nothing here needs them."""
    try:
        text = (common_dir / "config").read_text(errors="replace")
    except OSError:
        return {}
    out: dict[tuple[str, str], str] = {}
    section = ""
    for raw in text.splitlines():
        line = raw.strip()
        m = _SECTION.match(line)
        if m:
            name, sub = m.group(1).lower(), m.group(2)
            section = f'{name} "{sub}"' if sub is not None else name
            continue
        key, sep, value = line.partition("=")
        if sep and key.strip() and not line.startswith(("#", ";")):
            out.setdefault((section, key.strip().lower()), value.strip().strip('"'))
    return out


def remote_url(dirs: GitDirs) -> str | None:
    cfg = read_config(dirs.common_dir)
    urls = {s: v for (s, k), v in cfg.items() if k == "url" and s.startswith('remote "')}
    url = urls.get('remote "origin"') or next(iter(urls.values()), None)
    return strip_credentials(url) if url else None


def _uses_reftable(dirs: GitDirs) -> bool:
    return read_config(dirs.common_dir).get(("extensions", "refstorage")) == "reftable"


def resolve_ref(dirs: GitDirs, ref: str) -> str | None:
    """The commit a ref names: a loose ref file (per worktree first), else packed-refs."""
    for base in (dirs.git_dir, dirs.common_dir):
        f = base / ref
        if f.is_file():
            text = f.read_text(errors="replace").strip()
            if text.startswith("ref:"):
                return resolve_ref(dirs, text.removeprefix("ref:").strip())
            return text if _SHA.match(text) else None
    try:
        packed = (dirs.common_dir / "packed-refs").read_text(errors="replace")
    except OSError:
        return None
    for line in packed.splitlines():
        sha, _, name = line.partition(" ")
        if name == ref and _SHA.match(sha):
            return sha
    return None


def head(dirs: GitDirs) -> tuple[str | None, str | None]:
    """(branch, commit) of HEAD; branch None when detached, commit None before the first commit."""
    if _uses_reftable(dirs):
        return _git_head(dirs.worktree)
    try:
        text = (dirs.git_dir / "HEAD").read_text(errors="replace").strip()
    except OSError:
        return None, None
    if text.startswith("ref:"):
        ref = text.removeprefix("ref:").strip()
        return ref.removeprefix("refs/heads/"), resolve_ref(dirs, ref)
    return None, text if _SHA.match(text) else None


def _git_head(worktree: Path) -> tuple[str | None, str | None]:
    import subprocess

    def rev(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", "-C", str(worktree), "rev-parse", *args], capture_output=True,
                                 text=True, timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() or None if out.returncode == 0 else None

    branch = rev("--abbrev-ref", "HEAD")
    return (None if branch == "HEAD" else branch), rev("HEAD")


def capture_start(cwd: Path | str) -> dict[str, str | None]:
    """At run start: {repo, branch, commit_before}, all None outside a git work tree. The repo is
    origin's (else the first remote's) URL without credentials, else the main work tree's path."""
    dirs = find_git(Path(cwd))
    if dirs is None:
        return {"repo": None, "branch": None, "commit_before": None}
    branch, commit = head(dirs)
    # linked worktrees of one clone are one repository
    local = dirs.common_dir.parent if dirs.common_dir.name == ".git" else dirs.common_dir
    return {"repo": remote_url(dirs) or str(local), "branch": branch, "commit_before": commit}


def capture_end(cwd: Path | str) -> dict[str, str | None]:
    """At run end: {commit_after} (and the branch, which the agent may have switched)."""
    dirs = find_git(Path(cwd))
    if dirs is None:
        return {"commit_after": None}
    branch, commit = head(dirs)
    out: dict[str, str | None] = {"commit_after": commit}
    if branch:
        out["branch"] = branch
    return out
