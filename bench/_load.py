"""The benches' own load: one busy loop per core, always ended, so "loaded" means the same thing
in every figure."""
from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def busy_cores(n: int | None = None) -> Iterator[None]:
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
             for _ in range(n or os.cpu_count() or 2)]
    try:
        yield
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait()


CONDITIONS = ("upstream: a local fake that answers at once; request body: ~3 KB of JSON; "
              "load: idle, then one busy loop per core")
