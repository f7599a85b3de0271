"""Config files written while a run was going: named at the next run's start.

An agent with the user's uid can write `.guard.yaml` or the user config for its next run; guard
cannot stop that, so it makes it visible. The host records a fingerprint of every config file that
could apply at run start and at run end; files whose fingerprint moved during the run are kept in
GUARD_HOME/config.seen (0600) and named in the next start line until they are seen unchanged again.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path

from guard.config import project_config_path, user_config_path

SEEN_NAME = "config.seen"
MISSING = "missing"


def config_paths(env: Mapping[str, str], cwd: Path) -> list[Path]:
    """Every file whose content could set a run's limits: the user config, `.guard.yaml` here
    (even before it exists) and the nearest one above, GUARD_CONFIG and a local GUARD_POLICY."""
    paths = [user_config_path(env), cwd / ".guard.yaml"]
    found = project_config_path(cwd)
    if found is not None:
        paths.append(found)
    for name in ("GUARD_CONFIG", "GUARD_POLICY"):
        value = env.get(name, "")
        if value and "://" not in value:
            paths.append(Path(value).expanduser())
    return list(dict.fromkeys(p.absolute() for p in paths))


def fingerprint(paths: Iterable[Path]) -> dict[str, str]:
    out: dict[str, str] = {}
    for p in paths:
        try:
            out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else (
                "not-a-file" if p.exists() else MISSING)
        except OSError as e:
            out[str(p)] = f"unreadable: {e.strerror}"
    return out


def written_during(at_start: Mapping[str, str], at_end: Mapping[str, str]) -> list[str]:
    """Pure: the files whose content changed between the two fingerprints."""
    return sorted(p for p in set(at_start) | set(at_end) if at_start.get(p, MISSING) != at_end.get(p, MISSING))


def record_run_end(home: Path, run_id: str, at_start: Mapping[str, str], at_end: Mapping[str, str]) -> list[str]:
    """At run end: remember what the run wrote (and the fingerprints it left)."""
    changed = written_during(at_start, at_end)
    seen = _load(home)
    flagged: dict[str, str] = dict(seen.get("flagged", {}))
    for p in changed:
        flagged[p] = run_id
    _save(home, {"flagged": flagged, "fingerprints": {**seen.get("fingerprints", {}), **at_end}})
    return changed


def start_note(home: Path, now: Mapping[str, str]) -> str | None:
    """At run start: the line naming config files an earlier run wrote, or None. A flagged file
    stays named while it is as that run left it (a person who edits or removes it clears it)."""
    seen = _load(home)
    flagged: dict[str, str] = dict(seen.get("flagged", {}))
    left = seen.get("fingerprints", {})
    still = {p: run for p, run in flagged.items() if now.get(p, MISSING) == left.get(p, MISSING)}
    if still != flagged:
        _save(home, {"flagged": still, "fingerprints": left})
    if not still:
        return None
    named = ", ".join(f"{p} (written during run {run})" for p, run in sorted(still.items()))
    return f"config changed by a guarded run: {named}"


def _load(home: Path) -> dict[str, dict[str, str]]:
    try:
        data = json.loads((home / SEEN_NAME).read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _save(home: Path, data: dict[str, dict[str, str]]) -> None:
    home.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=home, prefix=".config.seen.")
    with os.fdopen(fd, "w") as f:
        json.dump(data, f)
    os.replace(tmp, home / SEEN_NAME)
