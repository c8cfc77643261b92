"""Who a run traces: given pids, a command to start, or everybody; checked
before anything is attached."""
from __future__ import annotations

import os
import shlex
from dataclasses import dataclass, field
from typing import Optional, Sequence

from .environment import UsageProblem

__all__ = ["Target", "target_from_options"]


@dataclass
class Target:
    """Who is traced: given pids, a command to start, or everybody."""

    pids: list[int] = field(default_factory=list)
    argv: list[str] = field(default_factory=list)
    follow: bool = False

    @property
    def filtered(self) -> bool:
        return bool(self.pids or self.argv)

    def describe(self) -> str:
        if self.argv:
            return f"command {shlex.join(self.argv)!r}"
        if self.pids:
            return "pid " + ", ".join(str(p) for p in self.pids)
        return "all processes"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def target_from_options(
    pids: Sequence[int], command: Optional[str], follow: bool, required: bool
) -> Target:
    if pids and command:
        raise UsageProblem("give either -p PID or -c COMMAND, not both")
    if required and not pids and not command:
        raise UsageProblem("say what to trace: -p PID or -c COMMAND")
    for pid in pids:
        if pid <= 0 or not _pid_alive(pid):
            raise UsageProblem(f"no such process: {pid}")
    argv: list[str] = []
    if command is not None:
        try:
            argv = shlex.split(command)
        except ValueError as exc:
            raise UsageProblem(f"cannot parse -c {command!r}: {exc}") from None
        if not argv:
            raise UsageProblem("-c needs a command")
        exe = argv[0]
        if os.sep in exe:
            ok = os.path.isfile(exe) and os.access(exe, os.X_OK)
        else:
            import shutil

            ok = shutil.which(exe) is not None
        if not ok:
            raise UsageProblem(f"cannot start {exe!r}: no such executable")
    # A command is always followed into its children, as strace -f and perf do.
    return Target(list(pids), argv, follow or bool(argv))
