"""Drop-in wrappers: `claude --version` through the wrapper reaches the real binary (a passthrough),
and no arrangement of PATH or symlinks makes a wrapper call itself."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from guard.adapters.base import find_executable, is_guard_wrapper
from guard.errors import ConfigError
from guard.wrappers import TOOLS, install_wrappers, repo_wrappers_dir, wrapper_dirs_from_env, wrapper_text
from tests.tools import claude_bin

pytestmark = pytest.mark.e2e


@pytest.fixture
def guard_launcher(tmp_path: Path) -> str:
    """`guard` as this checkout runs it (the wrapper execs an absolute path)."""
    p = tmp_path / "bin" / "guard"
    p.parent.mkdir()
    p.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m guard "$@"\n')
    p.chmod(0o755)
    return str(p)


def env_with(path: list[Path | str], home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GUARD_")}
    env["PATH"] = os.pathsep.join(str(p) for p in path) + os.pathsep + os.environ.get("PATH", "")
    env["GUARD_HOME"] = str(home)
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    return env


def runs(env: dict[str, str]) -> list[dict]:
    out = subprocess.run([sys.executable, "-m", "guard", "runs", "--json"], env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def real_claude_dir() -> Path:
    return Path(claude_bin()).parent


def test_repo_wrappers_are_the_installed_ones() -> None:
    for tool in TOOLS:
        p = repo_wrappers_dir() / tool
        assert p.read_text() == wrapper_text(tool) and os.access(p, os.X_OK) and is_guard_wrapper(p)


def test_claude_version_through_the_wrapper_runs_under_guard(tmp_path: Path, guard_launcher: str) -> None:
    wrap = tmp_path / "wrap"
    install_wrappers(wrap, guard_bin=guard_launcher)
    env = env_with([wrap, real_claude_dir()], tmp_path / "home")
    out = subprocess.run(["claude", "--version"], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "Claude Code" in out.stdout
    assert runs(env) == []   # --version is a passthrough: guard execs the tool and records nothing


@pytest.mark.parametrize("layout", ["twice", "symlink", "symlinked-dir"])
def test_no_recursion_with_the_dir_twice_or_symlinks(tmp_path: Path, guard_launcher: str, layout: str) -> None:
    wrap = tmp_path / "wrap"
    install_wrappers(wrap, guard_bin=guard_launcher)
    if layout == "twice":
        path = [wrap, wrap, real_claude_dir(), wrap]
    elif layout == "symlink":
        links = tmp_path / "links"
        links.mkdir()
        (links / "claude").symlink_to(wrap / "claude")
        path = [links, wrap, real_claude_dir()]
    else:
        (tmp_path / "alias").symlink_to(wrap, target_is_directory=True)
        path = [tmp_path / "alias", wrap, real_claude_dir()]
    env = env_with(path, tmp_path / "home")
    out = subprocess.run(["claude", "--version"], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "Claude Code" in out.stdout
    assert runs(env) == []   # ended, without a loop; a passthrough records nothing


def test_no_real_binary_is_not_found_not_a_loop(tmp_path: Path, guard_launcher: str) -> None:
    wrap = tmp_path / "wrap"
    install_wrappers(wrap, guard_bin=guard_launcher)
    env = env_with([wrap, wrap], tmp_path / "home")
    env["PATH"] = os.pathsep.join([str(wrap), str(wrap), "/usr/bin", "/bin"])
    out = subprocess.run([str(wrap / "claude"), "--version"], env=env, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 127 and "not found" in out.stderr


def test_a_guard_that_ran_the_wrapper_again_is_stopped(tmp_path: Path) -> None:
    # A broken guard that just execs the first `claude` on PATH: the wrapper's depth guard ends it.
    naive = tmp_path / "naive-guard"
    naive.write_text('#!/bin/sh\ntool=$1; shift\nexec "$tool" "$@"\n')
    naive.chmod(0o755)
    wrap = tmp_path / "wrap"
    install_wrappers(wrap, guard_bin=str(naive))
    env = env_with([wrap], tmp_path / "home")
    out = subprocess.run(["claude", "--version"], env=env, capture_output=True, text=True, timeout=30)
    assert out.returncode == 125 and "calling itself" in out.stderr


def test_find_executable_skips_wrappers_everywhere(tmp_path: Path) -> None:
    wrap = tmp_path / "wrap"
    install_wrappers(wrap, guard_bin="guard")
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / "claude").write_text((wrap / "claude").read_text())
    (copy / "claude").chmod(0o755)
    real = tmp_path / "real"
    real.mkdir()
    (real / "claude").write_text("#!/bin/sh\necho real\n")
    (real / "claude").chmod(0o755)
    env = {"PATH": os.pathsep.join(map(str, [wrap, copy, wrap, real]))}
    skip = wrapper_dirs_from_env({"GUARD_WRAPPER_DIR": f"{wrap}{os.pathsep}{wrap}"})
    assert find_executable("claude", env, skip) == str(real / "claude")
    assert find_executable("claude", env) == str(real / "claude")


def test_install_refuses_to_clobber_a_real_tool(tmp_path: Path) -> None:
    d = tmp_path / "bin"
    d.mkdir()
    (d / "aider").write_text("#!/bin/sh\necho I am the real aider\n")
    with pytest.raises(ConfigError, match="not a guard wrapper"):
        install_wrappers(d, ["aider"], guard_bin="guard")
    install_wrappers(d, ["claude"], guard_bin="guard")
    install_wrappers(d, ["claude"], guard_bin="guard")          # re-install over its own wrapper is fine
    install_wrappers(d, ["aider"], guard_bin="guard", force=True)
    assert is_guard_wrapper(d / "aider")
