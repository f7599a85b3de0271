"""README.md as a list of shell blocks to run, with what each promises.

Conventions (also written at the end of the README):

- A fenced block whose info string starts with `sh`, `bash` or `shell` is run, one command at
  a time (a line ending in `\\` continues on the next; `#` lines are comments).
- `sh no-run` marks a block that cannot run: placeholders, installs, the test command itself.
- `# exit N` at the end of a command: it must exit with N. Without it, it must exit 0.
- An ```` ```output ```` block right after a shell block (blank lines between at most): each of
  its lines must appear in what the block's last command printed (stdout and stderr).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

SHELL_LANGS = ("sh", "bash", "shell")
_FENCE = re.compile(r"^(\s*)(`{3,})(.*)$")
_EXIT = re.compile(r"#\s*exit\s+(\d+)\s*$")


@dataclass
class Command:
    text: str
    line: int               # 1-based line of the README where it starts
    exit_code: int = 0


@dataclass
class Block:
    line: int
    info: str
    commands: list[Command] = field(default_factory=list)
    expected_output: list[str] = field(default_factory=list)

    @property
    def exempt(self) -> bool:
        return "no-run" in self.info.split()


@dataclass
class _Fenced:
    line: int
    end: int
    info: str
    body: list[str]


def _fenced(text: str) -> list[_Fenced]:
    out: list[_Fenced] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, ticks, info = len(m.group(1)), m.group(2), m.group(3).strip()
        body: list[str] = []
        j = i + 1
        while j < len(lines) and not re.match(rf"^\s*{ticks}\s*$", lines[j]):
            body.append(lines[j][indent:] if lines[j][:indent].strip() == "" else lines[j])
            j += 1
        out.append(_Fenced(i + 1, j + 1, info, body))
        i = j + 1
    return out


def _commands(body: list[str], first_line: int) -> list[Command]:
    commands: list[Command] = []
    pending: list[str] = []
    start = 0
    for offset, raw in enumerate(body):
        line = raw.rstrip()
        if not pending:
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            start = first_line + offset
        if line.endswith("\\"):
            pending.append(line[:-1])
            continue
        pending.append(line)
        text = "\n".join(pending)
        m = _EXIT.search(line)
        commands.append(Command(text, start, int(m.group(1)) if m else 0))
        pending = []
    if pending:
        commands.append(Command("\n".join(pending), start))
    return commands


def shell_blocks(readme: Path) -> list[Block]:
    text = readme.read_text()
    lines = text.splitlines()
    fenced = _fenced(text)
    blocks: list[Block] = []
    for k, f in enumerate(fenced):
        lang = f.info.split()[0] if f.info else ""
        if lang not in SHELL_LANGS:
            continue
        block = Block(f.line, f.info, _commands(f.body, f.line + 1))
        nxt = fenced[k + 1] if k + 1 < len(fenced) else None
        if nxt is not None and nxt.info == "output" and all(
                not lines[n].strip() for n in range(f.end, nxt.line - 1)):
            block.expected_output = [s.strip() for s in nxt.body if s.strip()]
        blocks.append(block)
    return blocks
