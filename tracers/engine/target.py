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
    # --container NAME|ID and --cgroup PATH, as given, and the cgroup ids
    # they allow (a filter in the kernel, ANDed with the pids)
    containers: list[str] = field(default_factory=list)
    cgroups: list[str] = field(default_factory=list)
    cgroup_ids: set[int] = field(default_factory=set)
    # containers matched by name as they appear (nstrace ip6mr), in user space
    late_match: bool = False

    @property
    def by_container(self) -> bool:
        return bool(self.containers or self.cgroups)

    @property
    def filtered(self) -> bool:
        return bool(self.pids or self.argv)

    def describe(self) -> str:
        if self.argv:
            who = f"command {shlex.join(self.argv)!r}"
        elif self.pids:
            who = "pid " + ", ".join(str(p) for p in self.pids)
        else:
            who = "all processes"
        scope = [f"container {c}" for c in self.containers] + [f"cgroup {c}" for c in self.cgroups]
        return who + (" in " + " or ".join(scope) if scope else "")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def target_from_options(
    pids: Sequence[int], command: Optional[str], follow: bool, required: bool,
    containers: Sequence[str] = (), cgroups: Sequence[str] = (), late_match: bool = False,
) -> Target:
    """The target of a tracing command's flags, checked (one-line errors).
    ``late_match``: containers named may not exist yet (a watcher of their
    creation): they are matched by name as their records come."""
    target = _pids_and_command(pids, command, follow, required and not (containers or cgroups))
    if containers or cgroups:
        from .labels import resolver

        target.containers, target.cgroups = list(containers), list(cgroups)
        target.late_match = late_match
        target.cgroup_ids = resolver().filter_ids(list(containers), list(cgroups), must_exist=not late_match)
    return target


def _pids_and_command(
    pids: Sequence[int], command: Optional[str], follow: bool, required: bool
) -> Target:
    if pids and command:
        raise UsageProblem("give either -p PID or -c COMMAND, not both")
    if required and not pids and not command:
        raise UsageProblem("say what to trace: -p PID, -c COMMAND or --container NAME")
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
