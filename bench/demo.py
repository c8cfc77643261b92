"""``make demo``: the iowait case, reproduced and diagnosed.

Builds the reproduction (tests/iowait_repro.c: a parent forks children
that read a file with O_DIRECT, its wait() after the fork loop), runs it
under ``iotrace diagnose``, then runs the fixed variant (buffered reads,
waitpid() per child) the same way.  Everything lives in a temporary
directory under /var/tmp (a disk-backed filesystem, so O_DIRECT reaches the
disk) and is removed at the end.

Run as root from the source tree: ``.venv/bin/python bench/demo.py``.
"""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
from typing import Any, Optional, Sequence

# The reproduction lives with the tests that use it too (not installed).
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))

from iowait_repro import build_repro, make_data_file, repro_argv  # noqa: E402

__all__ = ["main"]

FILE_MIB = 32
WATCHED = ("iowait-cause", "odirect-bypass", "unreaped-children")


def main(argv: Optional[Sequence[str]] = None) -> int:
    from kerntrace.tracers.diagnose import run_diagnose
    from kerntrace.tracers.engine.environment import UsageProblem, require_bpf_environment
    from kerntrace.tracers.engine.target import Target

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
