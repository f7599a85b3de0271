"""GUARD_HOME is 0700 and its files 0600: another local user reads nothing of it."""
from __future__ import annotations

import os
import shutil
import stat
import subprocess

import pytest

from tests.helpers import SPENDER, run_guard

pytestmark = pytest.mark.e2e


def as_nobody(*cmd: str) -> subprocess.CompletedProcess[str]:
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("setpriv (util-linux) is needed to act as another user")
    if os.getuid() != 0:
        pytest.skip("needs root to switch to another user")
    return subprocess.run([setpriv, "--reuid", "65534", "--regid", "65534", "--clear-groups", *cmd],
                          capture_output=True, text=True, timeout=30)


def test_a_new_home_and_its_ledger_are_private(tmp_path):
    tmp_path.chmod(0o755)  # the parent is open: only guard's own modes protect its home
    home = tmp_path / "fresh-home"
    out = run_guard(home, "run", "--", "python3", SPENDER, "--lines", "2", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    for name in ("ledger.db", "ledger.db-wal", "ledger.db-shm"):
        p = home / name
        if p.exists():
            assert stat.S_IMODE(p.stat().st_mode) & 0o077 == 0, (name, oct(p.stat().st_mode))
    assert stat.S_IMODE((home / "runs").stat().st_mode) == 0o700
    for cmd in (["cat", str(home / "ledger.db")], ["ls", str(home / "runs")]):
        got = as_nobody(*cmd)
        assert got.returncode != 0 and "Permission denied" in got.stderr, (cmd, got.stderr)


def test_an_old_open_home_is_tightened(tmp_path):
    home = tmp_path / "old-home"
    home.mkdir(mode=0o755)
    home.chmod(0o755)
    (home / "ledger.db").touch(mode=0o644)
    (home / "ledger.db").chmod(0o644)
    out = run_guard(home, "runs", "--json")
    assert out.returncode == 0, out.stderr
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    assert stat.S_IMODE((home / "ledger.db").stat().st_mode) == 0o600
