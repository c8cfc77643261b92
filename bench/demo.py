"""``make demo``: the iowait case, reproduced and diagnosed.

Builds the bundled reproduction (iowait_repro.c: a parent forks children
that read a file with O_DIRECT, its wait() after the fork loop), runs it
under ``iotrace diagnose``, then runs the fixed variant (buffered reads,
waitpid() per child) the same way.  Everything lives in a temporary
directory under /var/tmp (a disk-backed filesystem, so O_DIRECT reaches the
disk) and is removed at the end.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from importlib import resources
from typing import Any, Optional, Sequence

__all__ = ["build_repro", "main", "make_data_file"]

CHILDREN = 6
FILE_MIB = 32
READ_SIZE = 4096
HOLD_S = 2.0
WATCHED = ("iowait-cause", "odirect-bypass", "unreaped-children")


def build_repro(directory: str) -> str:
    """Compiles iowait_repro.c into directory; returns the binary's path."""
    source = resources.files("kerntrace.analysis").joinpath("iowait_repro.c")
    binary = os.path.join(directory, "iowait_repro")
    with resources.as_file(source) as src:
        subprocess.run(["gcc", "-O2", "-Wall", "-o", binary, str(src)], check=True)
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
               hold_s: float = HOLD_S) -> list[str]:
    return [binary, *(["--fixed"] if fixed else []), "--hold", str(hold_s), data, str(children), str(read_size)]


def main(argv: Optional[Sequence[str]] = None) -> int:
    from ..tracers.engine.target import Target
    from ..tracers.diagnose import run_diagnose
    from ..tracers.engine.environment import UsageProblem, require_bpf_environment

    try:
        require_bpf_environment()
    except UsageProblem as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 2
    if shutil.which("gcc") is None:
        print("demo: gcc is missing (apt-get install gcc)", file=sys.stderr)
        return 2
    workdir = tempfile.mkdtemp(prefix="kerntrace-demo-", dir="/var/tmp")
    results: dict[str, Any] = {}
    try:
        binary = build_repro(workdir)
        data = make_data_file(workdir, FILE_MIB)
        for label, fixed in (("the bug", False), ("the fix", True)):
            argv_ = repro_argv(binary, data, fixed)
            print(f"\n=== {label}: iotrace diagnose -c '{' '.join(argv_)}'\n", flush=True)
            results[label] = run_diagnose(Target(argv=argv_, follow=True), None)
            sys.stdout.flush()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print("\n=== What changed")
    for label, summary in results.items():
        ids = [f["id"] for f in summary["findings"] if f["id"] in WATCHED]
        print(f"  {label:8} {', '.join(ids) if ids else 'no iowait, O_DIRECT or zombie finding'}")
    print(f"  (files were in {workdir}, now removed)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
