"""Process lifecycles from zombie events, and rule ``unreaped-children``.

The records (a run's, batch by batch, or a trace's, part by part) go
through ``ZombieState``, which keeps what is still open (the zombies not
reaped yet) and per-parent counters of the rest: the summary, the
lifecycles shown and the rule come from that state, so a run's memory does
not grow with its exits and `report` recomputes the live figures exactly.

Events (trace kind ``zombie_event``, bpf/zombies.h, one row per event):
ts_ns, enter_ns, start_ns, ret, kind, pid, tid, ppid, target, options,
wait_pid, exit_code, syscall, subreaper, ns_init, autoreap, comm,
parent_comm; ``kind`` ("fork", "exec", "exit", "wait", "free") and a wait's
``syscall`` ("wait4", "waitid") by name, as the tracer names them from the
object's BTF (enums zombie_kind, zombie_syscall).  A free names the real
parent the process died under (ppid, parent_comm, subreaper, ns_init,
autoreap: it ignores SIGCHLD): who reaped it when no wait the tracer saw
did.  ns_init, autoreap and the free's parent columns may be missing.

Also fed (``findings(frames)`` and ``lifecycles(frames)`` take them as
frames of these names, for a whole trace at once):
- ``zombie_final`` (the tracer's end state): pid, start_ns, proc_state for
  processes not reaped when tracing ended ("Z": confirmed still a zombie in
  /proc, "gone": reaped after tracing ended), and (optional) ppid,
  parent_comm: whose zombie it is then (the reaper an orphan was passed to).
- ``zombie_at_attach``: zombies that existed when tracing started (from
  /proc): ts_ns (the attach), pid, start_ns, coarse_ns, comm, ppid,
  parent_comm, exit_code.  They count from the attach: "a zombie for at
  least N s".
- ``children_at_attach`` (trace kind ``zombie_child_at_attach``): the
  traced processes' children alive at attach: pid, start_ns, coarse_ns,
  comm, ppid, parent_comm: the parent of an exit recorded after they were
  passed to init.

A process is identified by (pid, start_ns): pids are reused, start times
are not.  /proc knows a start only to the clock tick (coarse_ns): a start in
the same tick is the same process.  A wait4/waitid that returns pid P reaps
the zombie P that exited before it (a zombie holds its pid, so there is at
most one).
"""
from __future__ import annotations

import heapq
from copy import deepcopy
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Optional

from .findings import Finding

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Lifecycle", "ZombieState", "findings", "lifecycles", "lifecycle_frame", "never_reaped", "reaped_late",
           "sort_events", "state_of"]

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


def _reaper_kind(pid: int, ns_init: bool, subreaper: bool) -> str:
    """Who a reaper other than the parent is: the host's init or a PID
    namespace's (a container's init), a child subreaper, or another."""
    if pid == 1 or ns_init:
        return "init"
    return "subreaper" if subreaper else "other"


def _b(r: Mapping[str, Any], name: str) -> bool:
    """An optional flag column (missing in older traces), NaN-safe."""
    v = r.get(name)
    return bool(v) if v is not None and v == v else False


@dataclass
class _Parent:
    """Running figures of one parent's children whose fate is settled (and,
    at the end, of those still open): what the summary and the rule need,
    in counters and small sets, without the children themselves."""

    pid: int
    first: tuple[int, str]            # (seq, parent_comm) of its first child
    last: tuple[int, str]             # of its latest child
    children: int = 0
    at_attach: int = 0
    reaped_by_parent: int = 0
    reaped_by_others: int = 0         # summary: not the parent, not still a zombie
    still: int = 0                    # still a zombie at the end
    max_zombie_s: float = 0.0         # summary: over every child, rounded
    never: int = 0
    late: int = 0
    late_max_s: float = 0.0
    flagged_max_s: float = 0.0
    orphaned: int = 0
    passed: int = 0
    passed_hows: set[str] = field(default_factory=set)
    passed_who: dict[tuple[str, int], tuple[int, str]] = field(default_factory=dict)
    never_who: dict[tuple[str, int], tuple[int, str]] = field(default_factory=dict)
    ns_end: int = 0
    still_never: int = 0
    holders: set[str] = field(default_factory=set)
    held: int = 0                     # still zombies passed on to another holder
    predating_flagged: int = 0
    predating_min_s: float = float("inf")
    # the wait() window: the earliest flagged exit and the parent's wait
    # calls counted before it; whether a flagged child is open at the end
    first_flagged: Optional[tuple[int, int]] = None
    open_flagged: bool = False

    def add(self, life: Lifecycle, seq: int, min_zombie_s: float) -> bool:
        """Counts one child; returns whether the rule flags it."""
        self.children += 1
        self.at_attach += int(life.predates_tracing)
        self.first = min(self.first, (seq, life.parent_comm))
        self.last = max(self.last, (seq, life.parent_comm))
        if life.reaped_by == "parent":
            self.reaped_by_parent += 1
        elif life.reaped_by == "still a zombie":
            self.still += 1
        else:
            self.reaped_by_others += 1
        self.max_zombie_s = max(self.max_zombie_s, round(life.zombie_s, 3))
        never, late = never_reaped(life, min_zombie_s), reaped_late(life, min_zombie_s)
        if not (never or late):
            return False
        self.flagged_max_s = max(self.flagged_max_s, life.zombie_s)
        mark = (life.exit_ns, getattr(life, "_calls_before", 0))
        self.first_flagged = mark if self.first_flagged is None else min(self.first_flagged, mark)
        if life.predates_tracing:
            self.predating_flagged += 1
            self.predating_min_s = min(self.predating_min_s, life.zombie_s)
        if late:
            self.late += 1
            self.late_max_s = max(self.late_max_s, life.zombie_s)
            return True
        self.never += 1
        who = (life.reaped_by, life.reaper_pid) if life.reaper_pid is not None else None
        if life.parent_exit_ns is not None or life.reaped_by in PASSED_ON + (NAMESPACE_END,):
            self.orphaned += 1
        if life.reaped_by in PASSED_ON:
            self.passed += 1
            self.passed_hows.add(life.reaped_how)
            if who is not None:
                _first_seen(self.passed_who, who, seq, life.reaper_comm)
        if life.reaped_by in PASSED_ON + (NAMESPACE_END,) and who is not None:
            _first_seen(self.never_who, who, seq, life.reaper_comm)
        if life.reaped_by == NAMESPACE_END:
            self.ns_end += 1
        if life.reaped_by == "still a zombie":
            self.still_never += 1
            if life.holder_pid is not None:
                self.held += 1
                self.holders.add(f"{life.holder_pid} ({life.holder_comm})")
        return True


def _first_seen(who: dict[tuple[str, int], tuple[int, str]], key: tuple[str, int], seq: int, comm: str) -> None:
    """The reaper's name as its earliest-exited child shows it."""
    if key not in who or seq < who[key][0]:
        who[key] = (seq, comm)


def _who_of(who: dict[tuple[str, int], tuple[int, str]]) -> str:
    """The reapers of children passed on, e.g. "init 1 (systemd)", in the
    order of the children they reaped."""
    ordered = sorted(who.items(), key=lambda kv: kv[1][0])
    return " and ".join(f"{kind} {pid} ({comm})" for (kind, pid), (_seq, comm) in ordered) or "others"


class ZombieState:
    """Process lifecycles as a stream: fed the records in order (children
    and zombies found at attach, then the events), it keeps the processes
    not reaped yet (bounded by the zombies alive), per-parent counters of
    the settled ones, each waiter's wait-call counts, and the `keep`
    longest-lived zombies as evidence (every lifecycle when keep is None).
    The summary, the lifecycles shown and rule ``unreaped-children`` are
    computed from that state: the same records give the same figures,
    whether fed batch by batch (a live run) or part by part (`report`).

    Events are taken in the order given: callers sort each batch by
    (ts_ns, the order of a life) as ``sort_events`` does."""

    def __init__(self, min_zombie_s: float = MIN_ZOMBIE_S, keep: Optional[int] = None,
                 tracer_pid: Optional[int] = None) -> None:
        self.min_zombie_s = min_zombie_s
        self.keep = keep
        self.tracer_pid = tracer_pid      # a parent that is the tracer itself: never a finding
        self.exits = 0                    # lifecycles made (zombies at attach included)
        self.max_ts: Optional[int] = None
        self._seq = 0
        self._forks: dict[tuple[int, int], tuple[int, str]] = {}
        self._known_children: dict[int, tuple[int, int, int, str]] = {}
        self._open: dict[int, Lifecycle] = {}          # unreaped zombies, by pid
        self._stale: dict[tuple[int, int], Lifecycle] = {}   # open, their pid taken again (a lost reap)
        self._names: dict[int, str] = {}
        self._ns_inits: set[int] = set()
        self._parents: dict[int, _Parent] = {}
        # waiter pid -> [calls, until_ns of its flagged children, calls entered by then]
        self._calls: dict[int, list[int]] = {}
        self._kept: list[tuple[float, int, Lifecycle]] = []   # a min-heap by zombie_s, then seq
        self._all: list[Lifecycle] = []                       # keep None: every settled lifecycle
        self._kept_by_identity: dict[tuple[int, int], Lifecycle] = {}
        self.end_ns: Optional[int] = None
        self._final: dict[tuple[int, int], Mapping[str, Any]] = {}

    # -- input ------------------------------------------------------------------

    def add_children_at_attach(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """The traced processes' children alive at attach (pid, start_ns,
        coarse_ns, comm, ppid, parent_comm)."""
        for r in rows:
            self._known_children[int(r["pid"])] = (int(r["start_ns"]), int(r["coarse_ns"]), int(r["ppid"]),
                                                   _s(r["parent_comm"]))

    def add_zombies_at_attach(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Zombies found at attach (ts_ns: the attach, pid, start_ns,
        coarse_ns, comm, ppid, parent_comm, exit_code)."""
        for r in rows:
            life = Lifecycle(int(r["pid"]), int(r["start_ns"]), _s(r["comm"]), int(r["ppid"]), _s(r["parent_comm"]),
                             int(r["ts_ns"]), int(r["exit_code"]), ppid_at_exit=int(r["ppid"]),
                             predates_tracing=True, coarse_ns=int(r["coarse_ns"]))
            self._names[life.pid] = life.comm
            self._names.setdefault(life.parent_pid, life.parent_comm)
            self._seen(life.exit_ns)
            self._open_life(life)

    def feed(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Events (zombie_event records with kind and syscall by name)."""
        for r in rows:
            kind, pid, ts = r["kind"], int(r["pid"]), int(r["ts_ns"])
            self._seen(ts)
            self._names[pid] = _s(r["comm"])
            if kind in (FORK, EXIT):
                self._names[int(r["ppid"])] = _s(r["parent_comm"])
            if kind == FORK:
                self._forks[(pid, int(r["start_ns"]))] = (int(r["ppid"]), _s(r["parent_comm"]))
            elif kind == EXIT:
                self._exit(r, pid, ts)
            elif kind == WAIT:
                self._wait(r, pid, ts)
            elif kind == FREE:
                self._free(r, pid, ts)

    def set_end(self, end_ns: Optional[int], final: Iterable[Mapping[str, Any]] = ()) -> None:
        """When tracing ended, and /proc's word on the processes still
        unreaped then (pid, start_ns, proc_state "Z" or "gone", ppid,
        parent_comm)."""
        self.end_ns = int(end_ns) if end_ns is not None else None
        self._final = {(int(r["pid"]), int(r["start_ns"])): r for r in final}

    def _seen(self, ts: int) -> None:
        self.max_ts = ts if self.max_ts is None or ts > self.max_ts else self.max_ts

    def _open_life(self, life: Lifecycle) -> None:
        self._seq += 1
        self.exits += 1
        life._seq = self._seq  # type: ignore[attr-defined]
        life._calls_before = self._calls.get(life.parent_pid, [0])[0]  # type: ignore[attr-defined]
        if life.parent_pid not in self._parents:
            self._parents[life.parent_pid] = _Parent(life.parent_pid, (self._seq, life.parent_comm),
                                                     (self._seq, life.parent_comm))
        old = self._open.get(life.pid)
        if old is not None:
            self._stale[(old.pid, old.start_ns)] = old
        self._open[life.pid] = life

    def _exit(self, r: Mapping[str, Any], pid: int, ts: int) -> None:
        ident = (pid, int(r["start_ns"]))
        seen = self._open.get(pid)
        if seen is not None and seen.predates_tracing and seen.same_start(r["start_ns"]):
            # It exited between the attach and the read of /proc: the exit is exact.
            del self._open[pid]
            self.exits -= 1
        parent_of = self._forks.pop(ident, None)
        if parent_of is None and pid in self._known_children:
            start, coarse, ppid, pcomm = self._known_children[pid]
            if int(r["start_ns"]) // max(coarse, 1) == start // max(coarse, 1):
                parent_of = (ppid, pcomm)
                del self._known_children[pid]
        parent, parent_comm = parent_of or (int(r["ppid"]), _s(r["parent_comm"]))
        life = Lifecycle(pid, int(r["start_ns"]), _s(r["comm"]), parent, parent_comm, ts, int(r["exit_code"]),
                         ppid_at_exit=int(r["ppid"]), ns_init=_b(r, "ns_init"))
        if life.ns_init:
            self._ns_inits.add(pid)
        # A parent's exit orphans its zombies: they pass to a subreaper or init.
        for child in self._open.values():
            if child.parent_pid == pid and child.parent_exit_ns is None:
                child.parent_exit_ns = ts
        self._open_life(life)

    def _wait(self, r: Mapping[str, Any], pid: int, ts: int) -> None:
        calls = self._calls.setdefault(pid, [0, -1, 0])
        calls[0] += 1
        if int(r["enter_ns"]) <= calls[1]:
            calls[2] += 1
        target = int(r["target"])
        if target <= 0 or (r.get("syscall") == "waitid" and int(r["options"]) & WNOWAIT):
            return
        child = self._open.get(target)
        if child is None or child.exit_ns > ts:
            return
        child.reaped_ns = ts
        child.reaper_pid = pid
        child.reaper_comm = _s(r["comm"])
        child.reaped_how = _s(r.get("syscall"))
        if pid == child.parent_pid:
            child.reaped_by = "parent"
        else:
            child.reaped_by = _reaper_kind(pid, _b(r, "ns_init"), _b(r, "subreaper"))
        del self._open[target]
        self._settle(child)

    def _free(self, r: Mapping[str, Any], pid: int, ts: int) -> None:
        start = int(r["start_ns"])
        kept = self._kept_by_identity.get((pid, start))
        if kept is not None:
            kept.freed_ns = ts
        child = self._stale.pop((pid, start), None)
        stale = child is not None
        if child is None:
            child = self._open.get(pid)
            if child is None or not (child.start_ns == start or (child.predates_tracing and child.same_start(start))):
                return
        child.freed_ns = ts
        _released(child, r, ts, self._ns_inits, self._names)
        if not stale:
            del self._open[pid]
        self._settle(child)

    def _settle(self, life: Lifecycle) -> None:
        """A lifecycle whose reaping is known: into its parent's counters,
        the wait-call window, and the evidence kept."""
        life.zombie_s = (life.reaped_ns - life.exit_ns) / 1e9 if life.reaped_ns is not None else 0.0
        seq = life._seq  # type: ignore[attr-defined]
        if self._parents[life.parent_pid].add(life, seq, self.min_zombie_s):
            until = life.reaped_ns if life.reaped_ns is not None else life.exit_ns
            calls = self._calls.setdefault(life.parent_pid, [0, -1, 0])
            if until > calls[1]:
                # the calls so far all began before it (records come in time order)
                calls[1], calls[2] = until, calls[0]
        self._keep(life, seq)

    def _keep(self, life: Lifecycle, seq: int) -> None:
        if self.keep is None:
            self._all.append(life)
            self._kept_by_identity[(life.pid, life.start_ns)] = life
            return
        item = (life.zombie_s, seq, life)
        if not self.keep:
            return
        if len(self._kept) < self.keep:
            heapq.heappush(self._kept, item)
        elif item[:2] > self._kept[0][:2]:
            _zs, _seq, out = heapq.heapreplace(self._kept, item)
            self._kept_by_identity.pop((out.pid, out.start_ns), None)
        else:
            return
        self._kept_by_identity[(life.pid, life.start_ns)] = life

    # -- at the end ---------------------------------------------------------------

    def _end_ns(self) -> int:
        if self.end_ns is not None:
            return self.end_ns
        return self.max_ts if self.max_ts is not None else 0

    def _at_end(self) -> list[Lifecycle]:
        """The processes still unreaped, as the end leaves them (copies: the
        state goes on if more records come)."""
        end_ns = self._end_ns()
        out = []
        for open_life in list(self._stale.values()) + list(self._open.values()):
            life = replace(open_life)
            life._seq = open_life._seq  # type: ignore[attr-defined]
            life._calls_before = open_life._calls_before  # type: ignore[attr-defined]
            final = self._final.get((life.pid, life.start_ns))
            state = _s(final.get("proc_state")) if final is not None else "Z"
            life.reaped_by = "still a zombie" if state == "Z" else "after tracing"
            life.zombie_s = (end_ns - life.exit_ns) / 1e9
            holder = int((final.get("ppid") if final is not None else 0) or 0)
            if state == "Z" and holder and holder != life.parent_pid:
                # Passed on when the parent exited; its new parent has not reaped it (yet).
                life.holder_pid = holder
                life.holder_comm = _s(final.get("parent_comm", "") if final is not None else "")
            out.append(life)
        return out

    def _named(self, life: Lifecycle) -> Lifecycle:
        life.parent_comm = self._names.get(life.parent_pid, life.parent_comm)
        return life

    def lifecycles(self) -> list[Lifecycle]:
        """The lifecycles kept (every one when keep is None, else the
        longest zombies) and those still open, in the order they began."""
        settled = self._all if self.keep is None else [item[2] for item in self._kept]
        lives = settled + self._at_end()
        lives.sort(key=lambda l: l._seq)  # type: ignore[attr-defined]
        return [self._named(l) for l in lives]

    def parents(self) -> list[_Parent]:
        """Each parent's figures with the open children counted as the end
        leaves them, in the order of its first child."""
        out = {pid: deepcopy(p) for pid, p in self._parents.items()}
        for life in sorted(self._at_end(), key=lambda l: l._seq):  # type: ignore[attr-defined]
            p = out[life.parent_pid]
            if p.add(life, life._seq, self.min_zombie_s):  # type: ignore[attr-defined]
                p.open_flagged = True
        return [p for p in sorted(out.values(), key=lambda p: p.first[0]) if p.children]

    def parent_comm(self, p: _Parent, first: bool = False) -> str:
        """A parent's latest name (after any exec)."""
        return self._names.get(p.pid, (p.first if first else p.last)[1])

    def processes(self) -> list[dict[str, Any]]:
        """The summary's rows: per parent, its children's fates."""
        return [{"pid": p.pid, "comm": self.parent_comm(p, first=True), "children_exited": p.children,
                 "reaped_by_parent": p.reaped_by_parent, "reaped_by_others": p.reaped_by_others,
                 "still_zombies": p.still, "max_zombie_s": p.max_zombie_s, "zombies_at_attach": p.at_attach}
                for p in self.parents()]

    def wait_calls(self, p: _Parent) -> tuple[int, int]:
        """(the parent's wait calls in progress while its flagged children
        were zombies, all its wait calls)."""
        calls = self._calls.get(p.pid, [0, -1, 0])
        if p.first_flagged is None:
            return 0, calls[0]
        entered = calls[0] if p.open_flagged else calls[2]
        return max(0, entered - p.first_flagged[1]), calls[0]

    def findings(self) -> list[Finding]:
        return _findings(self)


def sort_events(table: Any) -> Any:
    """A batch of events in the order the state takes them: by ts_ns, and
    at one ts_ns in the order of a life (a pyarrow Table or a DataFrame)."""
    import numpy as np

    arrow = hasattr(table, "num_rows")
    kinds = table["kind"].to_pylist() if arrow else list(table["kind"])
    order = np.array([_LIFE_ORDER.get(k, len(_LIFE_ORDER)) for k in kinds], dtype=np.int64)
    ts = np.asarray(table["ts_ns"].to_numpy(), dtype=np.uint64)
    perm = np.lexsort((order, ts))
    return table.take(perm) if arrow else table.iloc[perm]


def state_of(frames: "dict[str, pd.DataFrame]", end_ns: Optional[int] = None, min_zombie_s: float = MIN_ZOMBIE_S,
             keep: Optional[int] = None, tracer_pid: Optional[int] = None) -> ZombieState:
    """A whole trace's frames through the state (zombie_events sorted as a
    whole): what a run recorded, at once."""
    state = ZombieState(min_zombie_s, keep, tracer_pid)
    state.add_children_at_attach(_records(frames, "children_at_attach"))
    state.add_zombies_at_attach(_records(frames, "zombie_at_attach"))
    ev = frames.get("zombie_events")
    if ev is not None and not ev.empty:
        state.feed(sort_events(ev.reset_index(drop=True)).to_dict("records"))
    state.set_end(end_ns, _records(frames, "zombie_final"))
    return state


def _records(frames: "dict[str, pd.DataFrame]", name: str) -> list[dict[str, Any]]:
    df = frames.get(name)
    return [] if df is None or df.empty else df.to_dict("records")


def lifecycles(frames: "dict[str, pd.DataFrame]", end_ns: Optional[int] = None) -> list[Lifecycle]:
    return state_of(frames, end_ns).lifecycles()


def _released(child: Lifecycle, r: Mapping[str, Any], ts: int, ns_inits: set[int], names: dict[int, str]) -> None:
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
    reaper = int(r.get("ppid", 0) or 0)
    if reaper and reaper != child.parent_pid:
        child.reaped_by = _reaper_kind(reaper, _b(r, "ns_init"), _b(r, "subreaper"))
        child.reaper_pid = reaper
        child.reaper_comm = _s(r.get("parent_comm", ""))
        if _b(r, "autoreap"):
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



def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def _zombies(n: int, how: str) -> str:
    """"1 was still a zombie", "5 were still zombies"."""
    return f"{n} was {how} a zombie" if n == 1 else f"{n} were {how} zombies"


def _fates(state: ZombieState, p: _Parent) -> list[str]:
    """How the children the parent never reaped ended up reaped."""
    out = []
    if p.passed:
        them = "it" if p.passed == 1 else "them"
        how = ""
        if p.passed_hows == {"auto"}:
            passing = "it was" if p.passed == 1 else "they were"
            how = f" (it ignores SIGCHLD: the kernel reaped {them} as {passing} passed to it)"
        elif p.passed_hows == {"unseen"}:
            how = " (with no wait4/waitid call the tracer saw: their zombie time runs to their release)"
        out.append(f"{_zombies(p.passed, 'still')} when it exited and {_who_of(p.passed_who)} reaped {them}{how}")
    if p.ns_end:
        out.append(f"{_zombies(p.ns_end, 'still')} when it exited, and the PID namespace's end "
                   f"reaped {'it' if p.ns_end == 1 else 'them'} (pid {p.pid} was the namespace's init: the "
                   f"kernel reaps what its init leaves)")
    if p.held:
        holders = " and ".join(sorted(p.holders))
        out.append(f"{_zombies(p.held, 'still')} when it exited, passed to {holders}, and not reaped "
                   f"yet when tracing ended")
    if p.still_never > p.held:
        out.append(f"{_zombies(p.still_never - p.held, 'still')} when tracing ended")
    return out


def _row(state: ZombieState, p: _Parent) -> dict[str, Any]:
    wait_calls, wait_calls_total = state.wait_calls(p)
    return {
        "parent_pid": p.pid,
        "parent_comm": state.parent_comm(p),   # its latest name
        "children_exited": p.children,
        "unreaped": p.never,
        "reaped_late": p.late,
        "max_zombie_s": round(p.flagged_max_s, 3),
        "wait_calls": wait_calls,
        "wait_calls_total": wait_calls_total,
        "reaped_by_parent": p.reaped_by_parent,
        "orphaned": p.orphaned,
        "reaped_by_others": p.passed,
        "reaped_by_namespace_end": p.ns_end,
        "still_zombies": p.still_never,
        "zombies_at_attach": p.at_attach,
        "reapers": _who_of(p.never_who) if p.never_who else "",
    }


def _notes(p: _Parent) -> list[str]:
    notes: list[str] = []
    if p.predating_flagged:
        # Their exit is unknown: what is known is how long they stayed zombies since.
        before = p.at_attach
        which = ("" if before == 1 else "each ") if p.predating_flagged == before else f"{p.predating_flagged} of them "
        notes.append(f"{_zombies(before, 'already')} when tracing started, {which}for at least "
                     f"{p.predating_min_s:.1f} s more")
    return notes


def _findings(state: ZombieState) -> list[Finding]:
    rows = []
    notes: dict[int, list[str]] = {}
    for p in state.parents():
        if not (p.never or p.late) or p.pid == state.tracer_pid:
            continue
        rows.append(_row(state, p))
        notes[p.pid] = _notes(p) + _fates(state, p)
        if p.never and p.late:
            notes[p.pid].append(f"{p.late} more it reaped only after up to {p.late_max_s:.1f} s")
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


def findings(frames: "dict[str, pd.DataFrame]", **context: Any) -> list[Finding]:
    """``unreaped-children``: a parent leaves exited children as zombies:
    it never reaps them (``unreaped``: init, a subreaper or the namespace's
    end did, or nobody yet), or reaps them late (``reaped_late``)."""
    min_zombie_s = float(context.get("min_zombie_s", MIN_ZOMBIE_S))
    return state_of(frames, context.get("end_ns"), min_zombie_s, keep=0, tracer_pid=context.get("tracer_pid")).findings()
