"""Process lifecycles from zombie events, and rule ``unreaped-children``.

Input frame ``zombie_events`` (bpf/zombies.h, one row per event): ts_ns,
enter_ns, start_ns, ret, kind, pid, tid, ppid, target, options, wait_pid,
exit_code, syscall, subreaper, comm, parent_comm; ``kind`` ("fork", "exit",
"wait", "free") and a wait's ``syscall`` ("wait4", "waitid") by name, as the
tracer names them from the object's BTF (enums zombie_kind, zombie_syscall).
Optional frame ``zombie_final``: pid, start_ns, proc_state for processes not
reaped when tracing ended ("Z": confirmed still a zombie in /proc, "gone":
reaped after tracing ended).

A process is identified by (pid, start_ns): pids are reused, start times
are not.  A wait4/waitid that returns pid P reaps the zombie P that exited
before it (a zombie holds its pid, so there is at most one).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Optional

from .findings import Finding

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Lifecycle", "findings", "lifecycles", "lifecycle_frame"]

FORK, EXIT, WAIT, FREE = "fork", "exit", "wait", "free"
# Events at the same ts_ns are taken in the order of a life.
_LIFE_ORDER = {FORK: 0, EXIT: 1, WAIT: 2, FREE: 3}
WNOWAIT = 0x01000000
# A zombie that lasts longer than this is a child its parent neglects.
MIN_ZOMBIE_S = 1.0


@dataclass
class Lifecycle:
    pid: int
    start_ns: int
    comm: str
    parent_pid: int          # the parent that forked it (or its parent at exit if the fork was not seen)
    parent_comm: str
    exit_ns: int
    exit_code: int
    ppid_at_exit: int = 0
    reaped_ns: Optional[int] = None
    reaper_pid: Optional[int] = None
    reaper_comm: str = ""
    reaped_by: str = ""      # parent | subreaper | init | other | kernel (auto) | after tracing | still a zombie
    parent_exit_ns: Optional[int] = None   # the parent exited while this was a zombie
    freed_ns: Optional[int] = None
    zombie_s: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _s(v: Any) -> str:
    return v if isinstance(v, str) else str(v)


def lifecycles(frames: "dict[str, pd.DataFrame]", end_ns: Optional[int] = None) -> list[Lifecycle]:
    ev = frames.get("zombie_events")
    if ev is None or ev.empty:
        return []
    ev = (ev.assign(_order=[_LIFE_ORDER.get(k, len(_LIFE_ORDER)) for k in ev["kind"]])
          .sort_values(["ts_ns", "_order"], kind="stable"))
    if end_ns is None:
        end_ns = int(ev["ts_ns"].max())
    forks: dict[tuple[int, int], tuple[int, str]] = {}
    open_by_pid: dict[int, Lifecycle] = {}      # unreaped zombies, by pid
    by_identity: dict[tuple[int, int], Lifecycle] = {}
    out: list[Lifecycle] = []
    for r in ev.itertuples(index=False):
        kind, pid, ts = r.kind, int(r.pid), int(r.ts_ns)
        if kind == FORK:
            forks[(pid, int(r.start_ns))] = (int(r.ppid), _s(r.parent_comm))
        elif kind == EXIT:
            ident = (pid, int(r.start_ns))
            parent, parent_comm = forks.get(ident, (int(r.ppid), _s(r.parent_comm)))
            life = Lifecycle(pid, int(r.start_ns), _s(r.comm), parent, parent_comm, ts, int(r.exit_code),
                             ppid_at_exit=int(r.ppid))
            out.append(life)
            by_identity[ident] = life
            open_by_pid[pid] = life
            # A parent's exit orphans its zombies: they pass to a subreaper or init.
            for child in open_by_pid.values():
                if child.parent_pid == pid and child is not life and child.parent_exit_ns is None:
                    child.parent_exit_ns = ts
        elif kind == WAIT:
            target = int(r.target)
            if target <= 0 or (r.syscall == "waitid" and int(r.options) & WNOWAIT):
                continue
            child = open_by_pid.get(target)
            if child is None or child.exit_ns > ts:
                continue
            child.reaped_ns = ts
            child.reaper_pid = pid
            child.reaper_comm = _s(r.comm)
            if pid == child.parent_pid:
                child.reaped_by = "parent"
            elif pid == 1:
                child.reaped_by = "init"
            elif bool(r.subreaper):
                child.reaped_by = "subreaper"
            else:
                child.reaped_by = "other"
            del open_by_pid[target]
        elif kind == FREE:
            child = by_identity.get((pid, int(r.start_ns)))
            if child is None:
                continue
            child.freed_ns = ts
            if child.reaped_ns is None:
                # Released without a wait: the parent ignores SIGCHLD (or the
                # wait record was lost); the kernel reaped it.
                child.reaped_ns = ts
                child.reaped_by = "kernel (auto)"
                open_by_pid.pop(pid, None)
    final = frames.get("zombie_final")
    states: dict[tuple[int, int], str] = {}
    if final is not None and not final.empty:
        states = {(int(r.pid), int(r.start_ns)): _s(r.proc_state) for r in final.itertuples(index=False)}
    for life in out:
        if life.reaped_ns is None:
            state = states.get((life.pid, life.start_ns), "Z")
            life.reaped_by = "still a zombie" if state == "Z" else "after tracing"
            life.zombie_s = (end_ns - life.exit_ns) / 1e9
        else:
            life.zombie_s = (life.reaped_ns - life.exit_ns) / 1e9
    return out


def lifecycle_frame(lives: list[Lifecycle]) -> "pd.DataFrame":
    import pandas as pd

    cols = list(Lifecycle.__dataclass_fields__)
    return pd.DataFrame([l.as_dict() for l in lives], columns=cols)


def _wait_calls(frames: "dict[str, pd.DataFrame]", pid: int, since_ns: int, until_ns: int) -> int:
    ev = frames.get("zombie_events")
    if ev is None or ev.empty:
        return 0
    w = ev[(ev["kind"] == WAIT) & (ev["pid"] == pid)]
    # A call counts if it was in progress at any time in the window.
    return int(((w["enter_ns"] <= until_ns) & (w["ts_ns"] >= since_ns)).sum())


def _leaked(life: Lifecycle, min_zombie_s: float) -> bool:
    if life.reaped_by == "kernel (auto)":
        return False
    return life.zombie_s >= min_zombie_s or life.parent_exit_ns is not None


def findings(frames: "dict[str, pd.DataFrame]", **context: Any) -> list[Finding]:
    """``unreaped-children``: a parent leaves exited children as zombies."""
    min_zombie_s = float(context.get("min_zombie_s", MIN_ZOMBIE_S))
    lives = lifecycles(frames, context.get("end_ns"))
    by_parent: dict[int, list[Lifecycle]] = {}
    for life in lives:
        by_parent.setdefault(life.parent_pid, []).append(life)
    rows = []
    for parent, children in by_parent.items():
        leaked = [c for c in children if _leaked(c, min_zombie_s)]
        if not leaked:
            continue
        since = min(c.exit_ns for c in leaked)
        until = max(c.exit_ns + int(c.zombie_s * 1e9) for c in leaked)
        waits = _wait_calls(frames, parent, since, until)
        all_waits = _wait_calls(frames, parent, 0, 2**63 - 1)
        rows.append({
            "parent_pid": parent,
            "parent_comm": children[-1].parent_comm,   # after any exec
            "children_exited": len(children),
            "unreaped": len(leaked),
            "max_zombie_s": round(max(c.zombie_s for c in leaked), 3),
            "wait_calls": waits,
            "wait_calls_total": all_waits,
            "reaped_by_parent": sum(1 for c in children if c.reaped_by == "parent"),
            "orphaned": sum(1 for c in leaked if c.parent_exit_ns is not None),
            "reaped_by_others": sum(1 for c in leaked if c.reaped_by in ("subreaper", "init", "other")),
            "still_zombies": sum(1 for c in leaked if c.reaped_by == "still a zombie"),
        })
    out = []
    for row in sorted(rows, key=lambda r: -r["unreaped"]):
        n = row["unreaped"]
        children = "child" if n == 1 else "children"
        if row["wait_calls"] == 0:
            tail = "and made no wait() call meanwhile"
            if row["wait_calls_total"]:
                calls = "call" if row["wait_calls_total"] == 1 else "calls"
                tail += (f" (its {row['wait_calls_total']} other wait() {calls} reaped "
                         f"{row['reaped_by_parent']} of {row['children_exited']} exited children)")
        else:
            calls = "call" if row["wait_calls"] == 1 else "calls"
            tail = (f"and its {row['wait_calls']} wait() {calls} meanwhile reaped only "
                    f"{row['reaped_by_parent']} of {row['children_exited']} exited children")
        summary = (f"pid {row['parent_pid']} ({row['parent_comm']}) left {n} {children} unreaped "
                   f"for up to {row['max_zombie_s']:.1f} s {tail}.")
        extra = []
        if row["orphaned"]:
            extra.append(f"{row['orphaned']} were still zombies when it exited and passed to a subreaper or init")
        if row["still_zombies"]:
            extra.append(f"{row['still_zombies']} were still zombies when tracing ended")
        if extra:
            summary = summary[:-1] + "; " + "; ".join(extra) + "."
        out.append(Finding(
            id="unreaped-children",
            severity="critical" if row["still_zombies"] >= 100 else "warning",
            title="A parent does not reap its children (zombies)",
            summary=summary,
            evidence=[row],
            recommendation=(
                "Reap every child: call waitpid() once per child, inside the fork loop or from a SIGCHLD "
                "handler that loops on waitpid(-1, &status, WNOHANG); if exit statuses are not needed, "
                "set SIGCHLD to SIG_IGN and the kernel reaps them. Each zombie holds a pid until reaped "
                "(pid_max, cgroup pids.max)."
            ),
            references=["man 2 wait", "man 2 prctl (PR_SET_CHILD_SUBREAPER)"],
        ))
    return out
