"""Process lifecycles from zombie events, and rule ``unreaped-children``.

Input frame ``zombie_events`` (bpf/zombies.h, one row per event): ts_ns,
enter_ns, start_ns, ret, kind, pid, tid, ppid, target, options, wait_pid,
exit_code, syscall, subreaper, ns_init, autoreap, comm, parent_comm; ``kind``
("fork", "exec", "exit", "wait", "free") and a wait's ``syscall`` ("wait4",
"waitid") by name, as the tracer names them from the object's BTF (enums
zombie_kind, zombie_syscall).  A free names the real parent the process died
under (ppid, parent_comm, subreaper, ns_init, autoreap: it ignores SIGCHLD):
who reaped it when no wait the tracer saw did.  ns_init, autoreap and the
free's parent columns may be missing (older traces).

Optional frames:
- ``zombie_final``: pid, start_ns, proc_state for processes not reaped when
  tracing ended ("Z": confirmed still a zombie in /proc, "gone": reaped
  after tracing ended), and (optional) ppid, parent_comm: whose zombie it
  is then (the reaper an orphan was passed to).
- ``zombie_at_attach``: zombies that existed when tracing started (from
  /proc): ts_ns (the attach), pid, start_ns, coarse_ns, comm, ppid,
  parent_comm, exit_code.  They count from the attach: "a zombie for at
  least N s".
- ``children_at_attach``: the traced processes' children alive at attach:
  pid, start_ns, coarse_ns, comm, ppid, parent_comm: the parent of an exit
  recorded after they were passed to init.

A process is identified by (pid, start_ns): pids are reused, start times
are not.  /proc knows a start only to the clock tick (coarse_ns): a start in
the same tick is the same process.  A wait4/waitid that returns pid P reaps
the zombie P that exited before it (a zombie holds its pid, so there is at
most one).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Optional

from .findings import Finding

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Lifecycle", "findings", "lifecycles", "lifecycle_frame", "never_reaped", "reaped_late"]

FORK, EXIT, WAIT, FREE, EXEC = "fork", "exit", "wait", "free", "exec"
# Events at the same ts_ns are taken in the order of a life.
_LIFE_ORDER = {FORK: 0, EXEC: 1, EXIT: 2, WAIT: 3, FREE: 4}
WNOWAIT = 0x01000000
# A zombie that lasts longer than this is a child its parent neglects.
MIN_ZOMBIE_S = 1.0
# reaped_by of a child its parent left to others.
PASSED_ON = ("init", "subreaper", "other")
NAMESPACE_END = "namespace end"


@dataclass
class Lifecycle:
    pid: int
    start_ns: int
    comm: str
    parent_pid: int          # the parent that forked it (or its parent at exit if the fork was not seen)
    parent_comm: str         # the parent's latest name (after any exec)
    exit_ns: int             # a zombie at attach: the attach
    exit_code: int
    ppid_at_exit: int = 0
    reaped_ns: Optional[int] = None
    reaper_pid: Optional[int] = None
    reaper_comm: str = ""
    # parent | init | subreaper | other | namespace end | kernel (auto) | after tracing | still a zombie
    reaped_by: str = ""
    # wait4 | waitid | auto (the kernel released it: its reaper ignores SIGCHLD) | namespace end
    # | unseen (freed with no wait the tracer saw: io_uring, a wait begun and ended unseen)
    reaped_how: str = ""
    parent_exit_ns: Optional[int] = None   # the parent exited while this was a zombie
    freed_ns: Optional[int] = None
    zombie_s: float = 0.0    # a zombie at attach: at least this long
    predates_tracing: bool = False
    coarse_ns: int = 0       # start_ns known to this tick only (from /proc)
    ns_init: bool = False    # it was a PID namespace's init
    holder_pid: Optional[int] = None   # still a zombie: whose child it is at the end, if not the parent's
    holder_comm: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def same_start(self, start_ns: int) -> bool:
        if self.coarse_ns:
            return int(start_ns) // self.coarse_ns == self.start_ns // self.coarse_ns
        return int(start_ns) == self.start_ns


def _s(v: Any) -> str:
    return v if isinstance(v, str) else str(v)


def _rows(frames: "dict[str, pd.DataFrame]", name: str) -> list[Any]:
    df = frames.get(name)
    return [] if df is None or df.empty else list(df.itertuples(index=False))


def _reaper_kind(pid: int, ns_init: bool, subreaper: bool) -> str:
    """Who a reaper other than the parent is: the host's init or a PID
    namespace's (a container's init), a child subreaper, or another."""
    if pid == 1 or ns_init:
        return "init"
    return "subreaper" if subreaper else "other"


def lifecycles(frames: "dict[str, pd.DataFrame]", end_ns: Optional[int] = None) -> list[Lifecycle]:
    ev = frames.get("zombie_events")
    at_attach = _rows(frames, "zombie_at_attach")
    if (ev is None or ev.empty) and not at_attach:
        return []
    if ev is None or ev.empty:
        events: list[Any] = []
    else:
        ev = (ev.assign(_order=[_LIFE_ORDER.get(k, len(_LIFE_ORDER)) for k in ev["kind"]])
              .sort_values(["ts_ns", "_order"], kind="stable"))
        events = list(ev.itertuples(index=False))
    if end_ns is None:
        end_ns = max([int(r.ts_ns) for r in events] + [int(r.ts_ns) for r in at_attach])
    forks: dict[tuple[int, int], tuple[int, str]] = {}
    # Children alive at attach, by pid: (start_ns, coarse_ns, ppid, parent_comm).
    known_children = {int(r.pid): (int(r.start_ns), int(r.coarse_ns), int(r.ppid), _s(r.parent_comm))
                      for r in _rows(frames, "children_at_attach")}
    open_by_pid: dict[int, Lifecycle] = {}      # unreaped zombies, by pid
    by_identity: dict[tuple[int, int], Lifecycle] = {}
    out: list[Lifecycle] = []
    # Each process's latest name: a fork copies the parent's comm, an exec
    # renames (a shell that forks, then execs the program, is the program).
    names: dict[int, str] = {}
    ns_inits: set[int] = set()
    for r in at_attach:
        life = Lifecycle(int(r.pid), int(r.start_ns), _s(r.comm), int(r.ppid), _s(r.parent_comm), int(r.ts_ns),
                         int(r.exit_code), ppid_at_exit=int(r.ppid), predates_tracing=True,
                         coarse_ns=int(r.coarse_ns))
        out.append(life)
        by_identity[(life.pid, life.start_ns)] = life
        open_by_pid[life.pid] = life
        names[life.pid] = life.comm
        names.setdefault(life.parent_pid, life.parent_comm)
    for r in events:
        kind, pid, ts = r.kind, int(r.pid), int(r.ts_ns)
        names[pid] = _s(r.comm)
        if kind in (FORK, EXIT):
            names[int(r.ppid)] = _s(r.parent_comm)
        if kind == FORK:
            forks[(pid, int(r.start_ns))] = (int(r.ppid), _s(r.parent_comm))
        elif kind == EXIT:
            ident = (pid, int(r.start_ns))
            seen = open_by_pid.get(pid)
            if seen is not None and seen.predates_tracing and seen.same_start(r.start_ns):
                # It exited between the attach and the read of /proc: the exit is exact.
                out.remove(seen)
                del open_by_pid[pid]
            parent_of = forks.get(ident)
            if parent_of is None and pid in known_children:
                start, coarse, ppid, pcomm = known_children[pid]
                if int(r.start_ns) // max(coarse, 1) == start // max(coarse, 1):
                    parent_of = (ppid, pcomm)
            parent, parent_comm = parent_of or (int(r.ppid), _s(r.parent_comm))
            life = Lifecycle(pid, int(r.start_ns), _s(r.comm), parent, parent_comm, ts, int(r.exit_code),
                             ppid_at_exit=int(r.ppid), ns_init=bool(getattr(r, "ns_init", 0)))
            out.append(life)
            by_identity[ident] = life
            open_by_pid[pid] = life
            if life.ns_init:
                ns_inits.add(pid)
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
            child.reaped_how = _s(r.syscall)
            if pid == child.parent_pid:
                child.reaped_by = "parent"
            else:
                child.reaped_by = _reaper_kind(pid, bool(getattr(r, "ns_init", 0)), bool(r.subreaper))
            del open_by_pid[target]
        elif kind == FREE:
            child = by_identity.get((pid, int(r.start_ns)))
            if child is None:
                child = open_by_pid.get(pid)
                if child is None or not child.predates_tracing or not child.same_start(r.start_ns):
                    continue
            child.freed_ns = ts
            if child.reaped_ns is None:
                _released(child, r, ts, ns_inits, names)
                open_by_pid.pop(pid, None)
    states = {(int(r.pid), int(r.start_ns)): r for r in _rows(frames, "zombie_final")}
    for life in out:
        life.parent_comm = names.get(life.parent_pid, life.parent_comm)
        if life.reaped_ns is None:
            final = states.get((life.pid, life.start_ns))
            state = _s(final.proc_state) if final is not None else "Z"
            life.reaped_by = "still a zombie" if state == "Z" else "after tracing"
            life.zombie_s = (end_ns - life.exit_ns) / 1e9
            holder = int(getattr(final, "ppid", 0) or 0)
            if state == "Z" and holder and holder != life.parent_pid:
                # Passed on when the parent exited; its new parent has not reaped it (yet).
                life.holder_pid = holder
                life.holder_comm = _s(getattr(final, "parent_comm", ""))
        else:
            life.zombie_s = (life.reaped_ns - life.exit_ns) / 1e9
    return out


def _released(child: Lifecycle, r: Any, ts: int, ns_inits: set[int], names: dict[int, str]) -> None:
    """A free with no wait before it: the kernel reaped the child.  Its real
    parent at the free says for whom: the parent itself (it ignores SIGCHLD,
    or it was a PID namespace's init and the namespace ended with it), or
    the reaper it was passed to when the parent exited (init ignoring
    SIGCHLD releases orphans as they come)."""
    child.reaped_ns = ts
    # Passed on to a reaper that ignores SIGCHLD, or left when a namespace's
    # init exits, a zombie is released in the parent's exit; the free comes
    # an RCU grace period later (seconds on an idle host with lazy RCU).
    released = child.parent_exit_ns if child.parent_exit_ns is not None else ts
    reaper = int(getattr(r, "ppid", 0))
    if reaper and reaper != child.parent_pid:
        child.reaped_by = _reaper_kind(reaper, bool(getattr(r, "ns_init", 0)), bool(r.subreaper))
        child.reaper_pid = reaper
        child.reaper_comm = _s(getattr(r, "parent_comm", ""))
        if getattr(r, "autoreap", 0):
            child.reaped_ns = released
            child.reaped_how = "auto"
        else:
            # Reaped, but by no wait the tracer saw: the free is a bound.
            child.reaped_how = "unseen"
    elif child.parent_exit_ns is not None and child.parent_pid in ns_inits:
        # zap_pid_ns_processes: the namespace's init exited, the kernel
        # killed what was left and reaped its children, with no wait syscall.
        child.reaped_ns = released
        child.reaped_by = NAMESPACE_END
        child.reaper_pid = child.parent_pid
        child.reaper_comm = names.get(child.parent_pid, child.parent_comm)
        child.reaped_how = NAMESPACE_END
    else:
        # Released without a wait: the parent ignores SIGCHLD (or the
        # wait record was lost); the kernel reaped it.
        child.reaped_by = "kernel (auto)"
        child.reaped_how = "auto"


def never_reaped(life: Lifecycle, min_zombie_s: float = MIN_ZOMBIE_S) -> bool:
    """A child its parent never reaped: it was left to init, a subreaper or
    the namespace's end, or it is still a zombie (for min_zombie_s at least,
    or after the parent died).  A child that exited after its parent died
    was never the parent's to reap."""
    if life.reaped_by in ("parent", "kernel (auto)") or life.ppid_at_exit != life.parent_pid:
        return False
    if life.reaped_by in ("still a zombie", "after tracing"):
        return life.zombie_s >= min_zombie_s or life.parent_exit_ns is not None
    return True


def reaped_late(life: Lifecycle, min_zombie_s: float = MIN_ZOMBIE_S) -> bool:
    """Reaped by its parent, but only after being a zombie for min_zombie_s."""
    return life.reaped_by == "parent" and life.zombie_s >= min_zombie_s


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


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def _zombies(n: int, how: str) -> str:
    """"1 was still a zombie", "5 were still zombies"."""
    return f"{n} was {how} a zombie" if n == 1 else f"{n} were {how} zombies"


def _who(lives: list[Lifecycle]) -> str:
    """The reapers of children passed on, e.g. "init 1 (systemd)"."""
    seen: dict[tuple[str, int], str] = {}
    for c in lives:
        if c.reaper_pid is not None:
            seen.setdefault((c.reaped_by, c.reaper_pid), c.reaper_comm)
    return " and ".join(f"{kind} {pid} ({comm})" for (kind, pid), comm in seen.items()) or "others"


def _fates(parent: int, never: list[Lifecycle]) -> list[str]:
    """How the children the parent never reaped ended up reaped."""
    out = []
    passed = [c for c in never if c.reaped_by in PASSED_ON]
    if passed:
        hows = {c.reaped_how for c in passed}
        them = "it" if len(passed) == 1 else "them"
        how = ""
        if hows == {"auto"}:
            passing = "it was" if len(passed) == 1 else "they were"
            how = f" (it ignores SIGCHLD: the kernel reaped {them} as {passing} passed to it)"
        elif hows == {"unseen"}:
            how = " (with no wait4/waitid call the tracer saw: their zombie time runs to their release)"
        out.append(f"{_zombies(len(passed), 'still')} when it exited and {_who(passed)} reaped {them}{how}")
    ended = [c for c in never if c.reaped_by == NAMESPACE_END]
    if ended:
        out.append(f"{_zombies(len(ended), 'still')} when it exited, and the PID namespace's end "
                   f"reaped {'it' if len(ended) == 1 else 'them'} (pid {parent} was the namespace's init: the "
                   f"kernel reaps what its init leaves)")
    still = [c for c in never if c.reaped_by == "still a zombie"]
    passed_on = [c for c in still if c.holder_pid is not None]
    if passed_on:
        holders = " and ".join(sorted({f"{c.holder_pid} ({c.holder_comm})" for c in passed_on}))
        out.append(f"{_zombies(len(passed_on), 'still')} when it exited, passed to {holders}, and not reaped "
                   f"yet when tracing ended")
    if len(still) > len(passed_on):
        out.append(f"{_zombies(len(still) - len(passed_on), 'still')} when tracing ended")
    return out


def findings(frames: "dict[str, pd.DataFrame]", **context: Any) -> list[Finding]:
    """``unreaped-children``: a parent leaves exited children as zombies:
    it never reaps them (``unreaped``: init, a subreaper or the namespace's
    end did, or nobody yet), or reaps them late (``reaped_late``)."""
    min_zombie_s = float(context.get("min_zombie_s", MIN_ZOMBIE_S))
    lives = lifecycles(frames, context.get("end_ns"))
    by_parent: dict[int, list[Lifecycle]] = {}
    for life in lives:
        by_parent.setdefault(life.parent_pid, []).append(life)
    rows = []
    notes: dict[int, list[str]] = {}
    for parent, children in by_parent.items():
        never = [c for c in children if never_reaped(c, min_zombie_s)]
        late = [c for c in children if reaped_late(c, min_zombie_s)]
        flagged = never + late
        if not flagged:
            continue
        since = min(c.exit_ns for c in flagged)
        until = max(c.exit_ns + int(c.zombie_s * 1e9) for c in flagged)
        predating = [c for c in flagged if c.predates_tracing]
        rows.append({
            "parent_pid": parent,
            "parent_comm": children[-1].parent_comm,   # its latest name
            "children_exited": len(children),
            "unreaped": len(never),
            "reaped_late": len(late),
            "max_zombie_s": round(max(c.zombie_s for c in flagged), 3),
            "wait_calls": _wait_calls(frames, parent, since, until),
            "wait_calls_total": _wait_calls(frames, parent, 0, 2**63 - 1),
            "reaped_by_parent": sum(1 for c in children if c.reaped_by == "parent"),
            "orphaned": sum(1 for c in never if c.parent_exit_ns is not None
                            or c.reaped_by in PASSED_ON + (NAMESPACE_END,)),
            "reaped_by_others": sum(1 for c in never if c.reaped_by in PASSED_ON),
            "reaped_by_namespace_end": sum(1 for c in never if c.reaped_by == NAMESPACE_END),
            "still_zombies": sum(1 for c in never if c.reaped_by == "still a zombie"),
            "zombies_at_attach": sum(1 for c in children if c.predates_tracing),
            "reapers": _who([c for c in never if c.reaped_by in PASSED_ON + (NAMESPACE_END,)])
            if any(c.reaper_pid is not None for c in never) else "",
        })
        notes[parent] = _fates(parent, never)
        if predating:
            # Their exit is unknown: what is known is how long they stayed zombies since.
            before = sum(1 for c in children if c.predates_tracing)
            which = ("" if before == 1 else "each ") if len(predating) == before else f"{len(predating)} of them "
            notes[parent].insert(0, f"{_zombies(before, 'already')} when tracing started, {which}for at least "
                                    f"{min(c.zombie_s for c in predating):.1f} s more")
        if never and late:
            notes[parent].append(f"{len(late)} more it reaped only after up to "
                                 f"{max(c.zombie_s for c in late):.1f} s")
    out = []
    for row in sorted(rows, key=lambda r: (-r["unreaped"], -r["reaped_late"])):
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
        who = f"pid {row['parent_pid']} ({row['parent_comm']})"
        if row["unreaped"]:
            summary = (f"{who} left {_count(row['unreaped'], 'child', 'children')} unreaped "
                       f"for up to {row['max_zombie_s']:.1f} s {tail}.")
        else:
            # The wait that reaped them late is in the window: no wait() tail.
            summary = (f"{who} reaped {_count(row['reaped_late'], 'child', 'children')} only after up to "
                       f"{row['max_zombie_s']:.1f} s as zombies.")
        extra = notes[row["parent_pid"]]
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
            references=["man 2 wait", "man 2 prctl (PR_SET_CHILD_SUBREAPER)", "man 7 pid_namespaces"],
        ))
    return out
