"""The iowait case's reproduction (iowait_repro.c beside this file): a
parent forks children that read a file with O_DIRECT, its wait() after the
fork loop; ``--fixed`` reads through the page cache and reaps every child.

Shared by the kernel tests (tests/ is on their import path through
tests/conftest.py) and by ``make demo`` (bench/demo.py); not installed.
"""
from __future__ import annotations

import os
import subprocess

__all__ = ["CHILDREN", "HOLD_S", "READ_SIZE", "SOURCE", "build_repro", "make_data_file", "repro_argv"]

SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "iowait_repro.c")
CHILDREN = 6
READ_SIZE = 4096
HOLD_S = 2.0


def build_repro(directory: str) -> str:
    """Compiles iowait_repro.c into directory; returns the binary's path."""
    binary = os.path.join(directory, "iowait_repro")
    subprocess.run(["gcc", "-O2", "-Wall", "-o", binary, SOURCE], check=True)
    return binary


def make_data_file(directory: str, mib: int) -> str:
    path = os.path.join(directory, "data")
    with open(path, "wb") as f:
        for _ in range(mib):
            f.write(os.urandom(1 << 20))
        f.flush()
        os.fsync(f.fileno())
    return path


def repro_argv(binary: str, data: str, fixed: bool, children: int = CHILDREN, read_size: int = READ_SIZE,
               hold_s: float = HOLD_S, go: bool = False) -> list[str]:
    """go: the parent waits for a line on stdin between its fork loop and its wait()."""
    return [binary, *(["--fixed"] if fixed else []), *(["--go"] if go else []), "--hold", str(hold_s), data,
            str(children), str(read_size)]
